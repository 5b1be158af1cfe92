package queue

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
)

// errTaskTimeout is the cause given to a task's context when its timeout
// passes.
var errTaskTimeout = errors.New("queue: task timed out")

// outcome is what one run of an action produced.
type outcome struct {
	result  TaskResult
	message TaskMessage
}

// runTask runs one claimed task in its stream's slot: with a deadline, a
// lease kept alive meanwhile, panics recovered, and the result handed to the
// completer. A result that comes after the timeout, after the lease was lost
// or after a hard stop is discarded.
func (m *SyncManager) runTask(s *stream, ct ClaimedTask) {
	defer func() {
		s.running.Add(-1)
		s.freeSlot()
		m.actions.Done()
	}()
	h := m.handlers[ct.Name]
	ctx, cancel := context.WithCancelCause(m.runCtx)
	defer cancel(nil)
	m.leases.hold(ct.Lease, cancel)
	defer m.leases.drop(ct.ID)
	runCtx, stopTimer := context.WithTimeoutCause(ctx, h.timeout, errTaskTimeout)
	defer stopTimer()
	runCtx, notes := withRunNotes(runCtx)
	task := ct.Task
	task.ctx = runCtx

	done := make(chan outcome, 1) // buffered: a late result is dropped, not blocked
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- outcome{TaskResultRetryFailure, TaskMessage(fmt.Sprintf("panic: %v\n%s", r, firstLines(debug.Stack(), 12)))}
			}
		}()
		res, msg := h.action.Do(task)
		done <- outcome{res, msg}
	}()

	var c Completion
	select {
	case o := <-done:
		c = m.completionFor(h, ct, o, notes)
	case <-runCtx.Done():
		switch cause := context.Cause(runCtx); {
		case errors.Is(cause, ErrLeaseLost):
			m.report(fmt.Errorf("task %d (%s %s): %w; another worker may run it", ct.ID, ct.Name, ct.Key, ErrLeaseLost))
			return
		case errors.Is(cause, errShutdown):
			c = Completion{Lease: ct.Lease, State: TaskReady, Message: "released at shutdown before the action finished"}
		default:
			o := outcome{TaskResultRetryFailure, TaskMessage(fmt.Sprintf("timed out after %s", h.timeout))}
			c = m.completionFor(h, ct, o, notes)
		}
	}
	m.completer.add(c, s)
}

// completionFor maps an action's result to the task's next state.
func (m *SyncManager) completionFor(h *taskHandler, ct ClaimedTask, o outcome, notes *runNotes) Completion {
	c := Completion{Lease: ct.Lease, Message: string(o.message)}
	switch o.result {
	case TaskResultSuccess:
		c.State = TaskDone
	case TaskResultPermanentFailure:
		c.State = TaskFailed
	case TaskResultRetryFailure:
		if h.maxAttempts > 0 && ct.Attempt >= h.maxAttempts {
			c.State = TaskFailed
			c.Message += fmt.Sprintf(" (gave up after %d attempts)", ct.Attempt)
			break
		}
		c.State = TaskRetry
		notes.mu.Lock()
		c.Delay = notes.retryAfter
		notes.mu.Unlock()
		if c.Delay <= 0 {
			c.Delay = h.retry.Backoff(ct.Attempt)
		}
		c.Delay = min(c.Delay, maxDelay)
	default:
		c.State = TaskFailed
		c.Message = fmt.Sprintf("action returned unknown result %q: %s", o.result, o.message)
	}
	return c
}

// firstLines keeps the first n lines of a stack trace.
func firstLines(b []byte, n int) string {
	for i, c := range b {
		if c == '\n' {
			n--
			if n == 0 {
				return string(b[:i])
			}
		}
	}
	return string(b)
}

// maxDelay keeps a computed delay within what PostgreSQL intervals and the
// queue's clock can sensibly hold.
const maxDelay = 365 * 24 * time.Hour
