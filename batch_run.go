package queue

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
)

// batchRun is one call of a batch action: the runs of the tasks it was
// given, each holding its own lease, key and result, sharing the call, its
// slot and its context. Its steps are a run's: claimed (startBatches),
// running (execute), finished (finish, each run's result settled on its
// own), written (the completer, per run).
type batchRun struct {
	s    *stream
	h    *taskHandler
	runs []*taskRun

	base   context.Context // ends when the call is cancelled; the deadline is added at execute
	cancel context.CancelCauseFunc
}

func newBatch(s *stream, runs []*taskRun) *batchRun {
	b := &batchRun{s: s, h: runs[0].h, runs: runs}
	b.base, b.cancel = context.WithCancelCause(context.Background())
	for _, r := range runs {
		r.batch.Store(b)
	}
	// A run ended before it joined the batch (its lease could not be
	// extended while the batch filled) ends the call.
	for _, r := range runs {
		if cause := r.ctx.cause(); cause != nil && !errors.Is(cause, ErrCancelRequested) {
			b.end(cause)
		}
	}
	return b
}

// end cancels the call and the context of each of its runs with cause.
func (b *batchRun) end(cause error) {
	if cause != errTaskTimeout { // the call's own deadline ends it with context.DeadlineExceeded
		b.cancel(cause)
	}
	for _, r := range b.runs {
		r.ctx.end(cause)
	}
}

// execute runs the call on this goroutine, its panics recovered, with the
// handler's timeout over the whole call.
func (b *batchRun) execute() {
	started := time.Now()
	deadline := started.Add(b.h.timeout)
	tasks := make([]Task, len(b.runs))
	for i, r := range b.runs {
		r.started, r.deadline = started, deadline
		tasks[i] = r.ct.Task
		tasks[i].run = r
	}
	ctx, stop := context.WithDeadlineCause(b.base, deadline, errTaskTimeout)
	timer := time.AfterFunc(b.h.timeout, b.timedOut)
	outcomes := runBatchAction(ctx, b.h.batch, tasks)
	timer.Stop()
	stop()
	b.finish(outcomes, time.Now())
}

// timedOut cancels the call at its deadline and reports it if it is still
// going a while later.
func (b *batchRun) timedOut() {
	b.end(errTaskTimeout)
	grace := max(b.h.timeout, time.Second)
	time.AfterFunc(grace, func() {
		if !b.runs[0].returned.Load() {
			b.s.m.report(b.runs[0].taskError(fmt.Errorf("batch of %d still running %s past its %s timeout; its tasks keep their stream slot, keys and leases until it returns",
				len(b.runs), grace, b.h.timeout)))
		}
	})
}

// finish settles each run's result, frees the call's slot and hands the
// results to the writer. A stream that pauses on Retry-After is held once,
// for the longest wait asked.
func (b *batchRun) finish(outcomes []outcome, returned time.Time) {
	completions := make([]Completion, len(b.runs))
	var wait time.Duration
	for i, r := range b.runs {
		completions[i] = r.settle(outcomes[i], returned)
		if completions[i].State == TaskRetry {
			wait = max(wait, r.notes.wait())
		}
	}
	b.cancel(errRunFinished)
	if b.s.holdOnRetryAfter && wait > 0 {
		b.s.hold(returned.Add(wait))
	}
	b.s.running.Add(-int64(len(b.runs)))
	b.s.freeSlot()
	for i, r := range b.runs {
		r.hand(completions[i])
	}
}

// runBatchAction calls a batch action and returns an outcome per task. A
// panic is a retry of every task with the panic's text; a result missing
// (a short answer) or not one of the three is a retry of its task.
func runBatchAction(ctx context.Context, action BatchAction, tasks []Task) (outcomes []outcome) {
	outcomes = make([]outcome, len(tasks))
	defer func() {
		if p := recover(); p != nil {
			msg := TaskMessage(fmt.Sprintf("panic in a batch of %d: %v\n%s", len(tasks), p, firstLines(debug.Stack(), 12)))
			for i := range outcomes {
				outcomes[i] = outcome{TaskResultRetryFailure, msg}
			}
		}
	}()
	results := action.DoBatch(ctx, tasks)
	for i := range outcomes {
		switch {
		case i >= len(results):
			outcomes[i] = outcome{TaskResultRetryFailure, TaskMessage(fmt.Sprintf("the batch action returned %d results for %d tasks; none for this one", len(results), len(tasks)))}
		case results[i].Result == "":
			outcomes[i] = outcome{TaskResultRetryFailure, TaskMessage("the batch action returned no result for this task: " + string(results[i].Message))}
		default:
			outcomes[i] = outcome{results[i].Result, results[i].Message}
		}
	}
	return outcomes
}

// startBatches is a claim's claimed step in a stream of batch actions: the
// n slots it took run one call each. It tops up a short claim for up to the
// handlers' batch wait, groups the tasks by name into batches, takes a run
// permit per batch under a rate limit, and starts them. When the claimed
// tasks need more calls than slots were taken it waits for slots; tasks
// that find none because the stream stops go back to the queue unrun. It
// returns when the rate limit's window ends if its permits ran out.
func (s *stream) startBatches(ctx context.Context, tasks []ClaimedTask, sent time.Time, n, limit int) time.Time {
	runs := make([]*taskRun, 0, len(tasks))
	for i := range tasks {
		runs = append(runs, s.holdRun(&tasks[i], sent))
	}
	if len(runs) > 0 && len(runs) < limit {
		runs = s.topUp(ctx, runs, limit)
	}
	batches := s.group(runs)
	var windowEnds time.Time
	if s.rateLimit > 0 && len(batches) > 0 {
		var granted int
		granted, windowEnds = s.takePermits(ctx, len(batches))
		s.releaseUnrun(batches[granted:], "the stream's rate limit was reached")
		batches = batches[:granted]
	}
	for i := len(batches); i < n; i++ {
		s.freeSlot()
	}
	for i, b := range batches {
		if i >= n && !s.takeSlot() {
			s.releaseUnrun(batches[i:], "the manager stopped")
			break
		}
		s.m.startRun(newBatch(s, b).runs[0])
	}
	return windowEnds
}

// topUp waits, up to the longest batch wait of the stream's handlers, for
// more due tasks to join runs, claiming them as they are announced (and
// once more at the end of the wait), until limit are claimed. It stops
// waiting as soon as one of the runs has ended (its lease could not be
// extended): the call then starts at once, cancelled, rather than hold
// the tasks past their leases.
func (s *stream) topUp(ctx context.Context, runs []*taskRun, limit int) []*taskRun {
	var wait time.Duration
	for _, name := range s.names {
		wait = max(wait, s.m.handlers[name].batchWait)
	}
	if wait == 0 {
		return runs
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	check := time.NewTicker(s.m.leases.leaseTick())
	defer check.Stop()
	for last := false; !last && len(runs) < limit; {
		select {
		case <-s.wake:
		case <-t.C:
			last = true
		case <-check.C:
			if anyEnded(runs) {
				return runs
			}
			continue
		case <-s.quit:
			return runs
		}
		tasks, sent, err := s.claim(ctx, limit-len(runs))
		if err != nil {
			if ctx.Err() == nil {
				s.faults.fail(err)
			}
			return runs
		}
		for i := range tasks {
			runs = append(runs, s.holdRun(&tasks[i], sent))
		}
	}
	return runs
}

// anyEnded reports whether the context of one of runs has ended.
func anyEnded(runs []*taskRun) bool {
	for _, r := range runs {
		if r.ctx.cause() != nil {
			return true
		}
	}
	return false
}

// group splits runs into batches: by name in the order claimed, each at
// most its handler's batch size.
func (s *stream) group(runs []*taskRun) [][]*taskRun {
	var batches [][]*taskRun
	open := map[string]int{} // name → index of its batch still filling
	for _, r := range runs {
		i, ok := open[r.h.name]
		if !ok || len(batches[i]) == r.h.batchMax {
			i = len(batches)
			open[r.h.name] = i
			batches = append(batches, make([]*taskRun, 0, min(r.h.batchMax, len(runs))))
		}
		batches[i] = append(batches[i], r)
	}
	return batches
}

// releaseUnrun hands the tasks of batches back to the queue (READY) without
// running them, and lets their runs go.
func (s *stream) releaseUnrun(batches [][]*taskRun, why string) {
	var leases []Lease
	for _, b := range batches {
		for _, r := range b {
			leases = append(leases, r.ct.Lease)
		}
	}
	// Also when the manager stops: the stream's context has ended by then.
	s.handBack(context.Background(), leases, why)
	for _, b := range batches {
		for _, r := range b {
			r.returned.Store(true)
			s.m.leases.drop(r)
			s.running.Add(-1)
			s.m.actions.Done()
		}
	}
}
