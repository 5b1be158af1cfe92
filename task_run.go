package queue

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
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

// taskRun is one run of a claimed task. It is settled once, by whichever
// comes first: the action returning, or the run ending without it (timeout,
// lost lease, hard stop). Settling frees the stream's slot and hands the
// result, if any, to the completer; a result that comes later is discarded.
type taskRun struct {
	m        *SyncManager
	s        *stream
	h        *taskHandler
	ct       *ClaimedTask
	deadline time.Time
	timer    *time.Timer // ends the run at its deadline; stopped by runTask
	settled  atomic.Bool
	notes    runNotes
	ctx      runContext
}

// runTask runs one claimed task in its stream's slot, on this goroutine:
// with a deadline, a lease kept alive meanwhile, panics recovered, and the
// result handed to the completer.
func (m *SyncManager) runTask(s *stream, ct *ClaimedTask) {
	r := &taskRun{m: m, s: s, h: m.handlers[ct.Name], ct: ct}
	r.deadline = time.Now().Add(r.h.timeout)
	r.timer = time.AfterFunc(r.h.timeout, func() { r.end(errTaskTimeout) })
	if !m.leases.hold(r) {
		r.timer.Stop()
		r.end(errShutdown) // the hard stop came first: the task goes back
		return
	}
	task := ct.Task
	task.run = r
	o := runAction(r.h.action, task)
	r.timer.Stop()
	if !r.settled.CompareAndSwap(false, true) {
		return // settled without the action: its result is discarded
	}
	c := m.completionFor(r.h, ct, o, &r.notes)
	r.settle(&c)
}

// end settles the run without the action's result, unless the action has
// returned first. cause says why: the task is retried after a timeout,
// released at a hard stop, and left to the worker that took it over after a
// lost lease. The action's context is cancelled with cause.
func (r *taskRun) end(cause error) {
	r.ctx.end(cause)
	if !r.settled.CompareAndSwap(false, true) {
		return
	}
	ct := r.ct
	switch {
	case errors.Is(cause, ErrLeaseLost):
		r.m.report(fmt.Errorf("task %d (%s %s): %w; another worker may run it", ct.ID, ct.Name, ct.Key, ErrLeaseLost))
		r.settle(nil)
	case errors.Is(cause, errShutdown):
		r.settle(&Completion{Lease: ct.Lease, State: TaskReady, Message: "released at shutdown before the action finished"})
	default:
		c := r.m.completionFor(r.h, ct, outcome{TaskResultRetryFailure, TaskMessage(fmt.Sprintf("timed out after %s", r.h.timeout))}, &r.notes)
		r.settle(&c)
	}
}

// settle hands the run's completion (nil: none) to the completer and frees
// what the run held. Only the caller that set settled calls it.
func (r *taskRun) settle(c *Completion) {
	if c != nil {
		r.m.completer.add(*c, r.s)
	}
	r.ctx.end(context.Canceled)
	r.m.leases.drop(r.ct.ID)
	r.s.running.Add(-1)
	r.s.freeSlot()
	r.m.actions.Done()
}

// context returns the action's context, made on the first call.
func (r *taskRun) context() context.Context {
	return r.ctx.get(r.deadline, &r.notes)
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
func (m *SyncManager) completionFor(h *taskHandler, ct *ClaimedTask, o outcome, notes *runNotes) Completion {
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
