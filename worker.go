package queue

import (
	"context"
	"fmt"
	"time"
)

// startRun runs r on an idle worker of its stream, or on a new one. A
// worker that runs one task after another spares each task a goroutine
// start and the growth of a fresh stack.
func (m *SyncManager) startRun(r *taskRun) {
	select {
	case r.s.handoff <- r:
	default:
		go m.work(r)
	}
}

// work runs r, then each run its stream hands it, until the stream retires
// its idle workers or stops claiming.
func (m *SyncManager) work(r *taskRun) {
	s := r.s
	for {
		r.execute()
		select {
		case r = <-s.handoff:
		case <-s.retire:
			return
		case <-s.quit:
			return
		}
	}
}

// execute is a run's running step: the action runs on this goroutine with
// its deadline and panics recovered. At the timeout the action's context is
// cancelled; if it goes on long after, that is reported. Either way the run
// holds its slot, key and lease until the action returns.
func (r *taskRun) execute() {
	if b := r.batch.Load(); b != nil {
		b.execute()
		return
	}
	r.started = time.Now()
	r.deadline = r.started.Add(r.h.timeout)
	timer := time.AfterFunc(r.h.timeout, r.timedOut)
	task := r.ct.Task
	task.run = r
	o := runAction(r.h.action, task)
	timer.Stop()
	r.finish(o, time.Now())
}

// timedOut cancels the action's context at its deadline and reports the
// run if it is still going a while later.
func (r *taskRun) timedOut() {
	r.ctx.end(errTaskTimeout)
	grace := max(r.h.timeout, time.Second)
	time.AfterFunc(grace, func() {
		if !r.returned.Load() {
			r.m.report(r.taskError(fmt.Errorf("still running %s past its %s timeout; it keeps its stream slot, key and lease until it returns",
				grace, r.h.timeout)))
		}
	})
}

// context returns the action's context, made on the first call.
func (r *taskRun) context() context.Context {
	return r.ctx.get(r.deadline, &r.notes)
}

// retireIdleWorkers ends the stream's workers that wait for a task. A
// stream does so when it has had no work for a poll interval.
func (s *stream) retireIdleWorkers() {
	for {
		select {
		case s.retire <- struct{}{}:
		default:
			return
		}
	}
}

// runningActions is the service that, at shutdown, waits for the actions
// still running. When its stop's deadline passes first it stops them hard:
// their contexts are cancelled with the shutdown as cause. Actions that
// return then have their results written (a retry caused by the stop
// releases the task unrun); a task whose action goes on is not released:
// it stays IN PROGRESS until its lease expires, so that no other process
// runs its key beside it.
type runningActions struct{ m *SyncManager }

// hardStopGrace is how long a hard stop waits for cancelled actions to
// return before it reports the ones still running.
const hardStopGrace = 50 * time.Millisecond

func (a runningActions) start(context.Context) error { return nil }

func (a runningActions) stop(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		a.m.actions.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	for _, r := range a.m.leases.running() {
		r.end(errShutdown)
	}
	select {
	case <-done:
		return nil
	case <-time.After(hardStopGrace):
	}
	still := a.m.leases.running()
	if len(still) == 0 {
		return nil
	}
	ids := make([]int64, len(still))
	for i, r := range still {
		ids[i] = r.ct.ID
	}
	return fmt.Errorf("queue: %d actions still running after the shutdown's deadline (tasks %v); their tasks stay IN PROGRESS until their leases expire", len(still), ids)
}
