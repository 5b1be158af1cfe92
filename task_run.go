package queue

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// A claimed task's run goes through four steps, each owned by one file:
//
//   - claimed (stream.go): the claim loop took a slot of the stream and the
//     lease keeper holds the task's lease;
//   - running (worker.go): the action runs on a worker. Its context ends at
//     the timeout, when the lease is lost or at a hard stop, but the run
//     keeps its slot, its key and its lease until the action returns: Go
//     cannot stop a goroutine, and a second run of the key must not start
//     beside one that ignores its context;
//   - finished (this file): the action returned; its result becomes the
//     task's completion and the slot is freed. The lease is still held, and
//     extended, until the result is written;
//   - written (completer.go): the result is recorded and the lease keeper
//     lets the run go.
type taskRun struct {
	m  *SyncManager
	s  *stream
	h  *taskHandler
	ct *ClaimedTask

	started  time.Time // when the action started
	deadline time.Time // its timeout, from started
	ctx      runContext
	notes    runNotes
	batch    atomic.Pointer[batchRun] // the call the run is part of, for a batch action

	returned atomic.Bool // the action has returned
	lost     atomic.Bool // the queue has given the task to another holder

	leaseUntil time.Time // the lease's expiry as this process knows it; guarded by the lease keeper
}

// errTaskTimeout is the cause given to a task's context when its timeout
// passes.
var errTaskTimeout = errors.New("queue: task timed out")

// errLeaseNotExtended is the cause given to a task's context when its lease
// is about to expire and could not be extended: before another process may
// take the task over, this one stops it.
var errLeaseNotExtended = fmt.Errorf("%w: it could not be extended before it expired", ErrLeaseLost)

// errShutdown is the cause given to actions' contexts at a hard stop.
var errShutdown = errors.New("queue: manager shutting down")

func (m *SyncManager) newRun(s *stream, ct *ClaimedTask) *taskRun {
	return &taskRun{m: m, s: s, h: m.handlers[ct.Name], ct: ct}
}

// outcome is what one run of an action produced.
type outcome struct {
	result  TaskResult
	message TaskMessage
}

// finish is the run's finished step: the action returned at returned with
// o. The run's result is written (or, with the lease lost, discarded) and
// its slot freed.
func (r *taskRun) finish(o outcome, returned time.Time) {
	c := r.settle(o, returned)
	if r.s.holdOnRetryAfter && c.State == TaskRetry {
		if wait := r.notes.wait(); wait > 0 {
			r.s.hold(returned.Add(wait))
		}
	}
	r.s.running.Add(-1)
	r.s.freeSlot()
	r.hand(c)
}

// settle turns the outcome of the run's action, which returned at
// returned, into the task's completion, and logs it. The result is the
// action's own whatever ended its context; a run that returned after its
// timeout says so in its message, and a retry caused by a hard stop
// releases the task unrun.
func (r *taskRun) settle(o outcome, returned time.Time) Completion {
	r.returned.Store(true)
	cause := r.ctx.end(errRunFinished)
	c := r.m.completionFor(r.h, r.ct, o, &r.notes)
	if over := returned.Sub(r.deadline); over > 0 {
		c.Message += fmt.Sprintf(" (returned %s after its %s timeout)", over.Round(time.Millisecond), r.h.timeout)
	}
	switch {
	case errors.Is(cause, ErrCancelRequested) && c.State != TaskDone:
		c = Completion{Lease: r.ct.Lease, State: TaskCancelled, Message: "cancelled by request: " + c.Message}
	case errors.Is(cause, errShutdown) && c.State == TaskRetry:
		c = Completion{Lease: r.ct.Lease, State: TaskReady, Message: "released at shutdown before the action finished: " + c.Message}
	}
	r.logFinished(c, returned.Sub(r.started))
	return c
}

// hand gives the run's completion to the result writer, or discards it
// when the queue has given the task to another holder.
func (r *taskRun) hand(c Completion) {
	if r.lost.Load() {
		r.m.report(r.taskError(fmt.Errorf("result %s discarded: %w", c.State, ErrLeaseLost)))
		r.m.leases.drop(r)
	} else {
		r.m.completer.add(r, c)
	}
	r.m.actions.Done()
}

// end ends the run's context with cause (the first cause given wins) and
// returns the cause in force. In a batch, every cause but an operator's
// cancellation of this one task ends the whole call: its tasks share the
// call, and none of its keys may run elsewhere while it goes on.
func (r *taskRun) end(cause error) error {
	in := r.ctx.end(cause)
	if b := r.batch.Load(); b != nil && !errors.Is(cause, ErrCancelRequested) {
		b.end(cause)
	}
	return in
}

// errRunFinished ends a run's context once its action has returned.
var errRunFinished = errors.New("queue: run finished")

// loseLease is called by the lease keeper when the queue says the task now
// has another holder: the action is cancelled and its result discarded.
func (r *taskRun) loseLease() {
	r.lost.Store(true)
	r.end(ErrLeaseLost)
	if !r.returned.Load() {
		r.m.report(r.taskError(fmt.Errorf("%w; its action here is cancelled and another worker may run it", ErrLeaseLost)))
	}
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
