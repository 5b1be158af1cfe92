package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// TaskError is an error about one run of a task, as the error handler
// receives it (errors.As finds it) and as it is logged: with the task's id,
// name, key, attempt and stream as attributes.
type TaskError struct {
	TaskID  int64
	Name    string
	Key     string
	Attempt int
	Stream  string
	Err     error
}

// Error says which task and what happened.
func (e *TaskError) Error() string {
	return fmt.Sprintf("task %d (%s %s): %v", e.TaskID, e.Name, e.Key, e.Err)
}

// Unwrap returns the cause.
func (e *TaskError) Unwrap() error { return e.Err }

// taskError wraps err with r's task.
func (r *taskRun) taskError(err error) *TaskError {
	return &TaskError{TaskID: r.ct.ID, Name: r.ct.Name, Key: r.ct.Key, Attempt: r.ct.Attempt, Stream: r.s.name, Err: err}
}

// taskAttrs are the attributes that name r's task in a log line.
func (r *taskRun) taskAttrs() []slog.Attr {
	return []slog.Attr{
		slog.Int64("task_id", r.ct.ID), slog.String("name", r.ct.Name), slog.String("key", r.ct.Key),
		slog.Int("attempt", r.ct.Attempt), slog.String("stream", r.s.name),
	}
}

// report hands an error to the error handler or, without one, logs it at
// error level, with a task's attributes when it is about one.
func (m *SyncManager) report(err error) {
	if err == nil {
		return
	}
	m.mu.Lock()
	h := m.onError
	m.mu.Unlock()
	if h != nil {
		h(err)
		return
	}
	attrs := []slog.Attr{slog.String("error", err.Error())}
	var te *TaskError
	if errors.As(err, &te) {
		attrs = append(attrs, slog.Int64("task_id", te.TaskID), slog.String("name", te.Name), slog.String("key", te.Key),
			slog.Int("attempt", te.Attempt), slog.String("stream", te.Stream))
	}
	m.cfg.logger.LogAttrs(context.Background(), slog.LevelError, "esync: error", attrs...)
}

// logFinished logs a finished run: debug for a success, info for a retry,
// warn for a failure or a cancellation, with what the run took and
// produced.
func (r *taskRun) logFinished(c Completion, took time.Duration) {
	level := slog.LevelDebug
	switch c.State {
	case TaskRetry, TaskReady:
		level = slog.LevelInfo
	case TaskFailed, TaskCancelled:
		level = slog.LevelWarn
	}
	log := r.m.cfg.logger
	if !log.Enabled(context.Background(), level) {
		return
	}
	attrs := append(r.taskAttrs(), slog.String("result", string(c.State)), slog.Duration("duration", took))
	if c.Message != "" && c.State != TaskDone {
		attrs = append(attrs, slog.String("message", c.Message))
	}
	if c.State == TaskRetry {
		attrs = append(attrs, slog.Duration("retry_in", c.Delay))
	}
	log.LogAttrs(context.Background(), level, "esync: task finished", attrs...)
}
