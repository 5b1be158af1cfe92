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
// completer. The action runs on this goroutine; if its context ends first
// (timeout, lost lease, hard stop), the run is settled without it: the slot
// is freed and a result that comes later is discarded.
func (m *SyncManager) runTask(s *stream, ct ClaimedTask) {
	h := m.handlers[ct.Name]
	ctx, cancel := context.WithCancelCause(m.runCtx)
	m.leases.hold(ct.Lease, cancel)
	runCtx, stopTimer := context.WithTimeoutCause(ctx, h.timeout, errTaskTimeout)
	runCtx, notes := withRunNotes(runCtx)
	task := ct.Task
	task.ctx = runCtx

	// The first of "the action returned" and "the context ended" settles
	// the run, once: stopping the watch below fails exactly when the watch
	// has started settling it.
	settle := func(c *Completion) {
		if c != nil {
			m.completer.add(*c, s)
		}
		stopTimer()
		cancel(nil)
		m.leases.drop(ct.ID)
		s.running.Add(-1)
		s.freeSlot()
		m.actions.Done()
	}
	stopWatching := context.AfterFunc(runCtx, func() {
		switch cause := context.Cause(runCtx); {
		case errors.Is(cause, ErrLeaseLost):
			m.report(fmt.Errorf("task %d (%s %s): %w; another worker may run it", ct.ID, ct.Name, ct.Key, ErrLeaseLost))
			settle(nil)
		case errors.Is(cause, errShutdown):
			settle(&Completion{Lease: ct.Lease, State: TaskReady, Message: "released at shutdown before the action finished"})
		default:
			c := m.completionFor(h, ct, outcome{TaskResultRetryFailure, TaskMessage(fmt.Sprintf("timed out after %s", h.timeout))}, notes)
			settle(&c)
		}
	})

	o := runAction(h.action, task)
	if !stopWatching() {
		return // settled without the action: its result is discarded
	}
	c := m.completionFor(h, ct, o, notes)
	settle(&c)
}

// runAction runs an action, turning a panic into a retry failure with the
// panic text.
func runAction(action TaskAction, task Task) (o outcome) {
	defer func() {
		if r := recover(); r != nil {
			o = outcome{TaskResultRetryFailure, TaskMessage(fmt.Sprintf("panic: %v\n%s", r, firstLines(debug.Stack(), 12)))}
		}
	}()
	res, msg := action.Do(task)
	return outcome{res, msg}
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
