package queue_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esync/queue"
)

// TestTaskRunPanicRecovered: a panicking action makes its task RETRY with
// the panic text as message, and the manager keeps running tasks.
func TestTaskRunPanicRecovered(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	sm := queue.NewSyncManager(e.d)
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		if task.Key == "bad" {
			panic("boom in action 7f3a")
		}
		return queue.TaskResultSuccess, "fine"
	}), "p", queue.WithRetryPolicy(queue.ConstantBackoff(time.Hour)))
	bad := e.add(t, "p", "bad", nil)
	smStart(t, sm)
	smEventually(t, 20*time.Second, "the panicking task to be RETRY", func() bool { return e.task(t, bad).State == queue.TaskRetry })
	task := e.task(t, bad)
	if !strings.Contains(task.Message, "panic: boom in action 7f3a") || task.Attempt != 1 {
		t.Fatalf("message %q, attempt %d; want the panic text after attempt 1", task.Message, task.Attempt)
	}
	good := e.add(t, "p", "good", nil)
	smEventually(t, 20*time.Second, "a task after the panic to be DONE", func() bool { return e.task(t, good).State == queue.TaskDone })
}

// alwaysRetry counts its runs and asks for a retry every time.
type alwaysRetry struct{ runs atomic.Int64 }

func (a *alwaysRetry) Do(queue.Task) (queue.TaskResult, queue.TaskMessage) {
	a.runs.Add(1)
	return queue.TaskResultRetryFailure, "try again"
}

// TestTaskRunMaxAttemptsOfHandler: an always-RETRY action with a 10ms
// constant backoff and WithTaskMaxAttempts(3) ends FAILED after exactly 3
// runs.
func TestTaskRunMaxAttemptsOfHandler(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	act := &alwaysRetry{}
	sm := queue.NewSyncManager(e.d, queue.WithPollInterval(20*time.Millisecond))
	sm.RegisterTaskHandler(act, "r", queue.WithRetryPolicy(queue.ConstantBackoff(10*time.Millisecond)), queue.WithTaskMaxAttempts(3))
	id := e.add(t, "r", "k", nil)
	smRunUntilDone(t, sm, time.Minute)
	task := e.task(t, id)
	if task.State != queue.TaskFailed || task.Attempt != 3 || act.runs.Load() != 3 {
		t.Fatalf("task %s after %d attempts (%d runs), want FAILED after exactly 3", task.State, task.Attempt, act.runs.Load())
	}
	if !strings.Contains(task.Message, "gave up after 3 attempts") {
		t.Fatalf("message %q does not say it gave up", task.Message)
	}
}

// TestTaskRunMaxAttemptsOfTask: a task added WithMaxAttempts(2) ends FAILED
// after exactly 2 runs, even though the handler would allow more.
func TestTaskRunMaxAttemptsOfTask(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	act := &alwaysRetry{}
	sm := queue.NewSyncManager(e.d, queue.WithPollInterval(20*time.Millisecond))
	sm.RegisterTaskHandler(act, "r", queue.WithRetryPolicy(queue.ConstantBackoff(10*time.Millisecond)), queue.WithTaskMaxAttempts(10))
	id := e.add(t, "r", "k", nil, queue.WithMaxAttempts(2))
	smRunUntilDone(t, sm, time.Minute)
	task := e.task(t, id)
	if task.State != queue.TaskFailed || task.Attempt != 2 || act.runs.Load() != 2 {
		t.Fatalf("task %s after %d attempts (%d runs), want FAILED after exactly 2", task.State, task.Attempt, act.runs.Load())
	}
}

// TestTaskRunRetryAfter: queue.RetryAfter overrides the retry policy's
// backoff: the task is due again d later, not 10ms later.
func TestTaskRunRetryAfter(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	act := queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		queue.RetryAfter(task, time.Hour)
		return queue.TaskResultRetryFailure, "come back in an hour"
	})
	sm := queue.NewSyncManager(e.d)
	sm.RegisterTaskHandler(act, "ra", queue.WithRetryPolicy(queue.ConstantBackoff(10*time.Millisecond)))
	id := e.add(t, "ra", "k", nil)
	var before time.Time
	if err := e.db.QueryRowContext(e.ctx, `SELECT now()`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if err := sm.RunUntilIdle(e.ctx); err != nil {
		t.Fatal(err)
	}
	var after time.Time
	if err := e.db.QueryRowContext(e.ctx, `SELECT now()`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	task := e.task(t, id)
	if task.State != queue.TaskRetry || task.Attempt != 1 {
		t.Fatalf("task %s attempt %d, want RETRY after 1 attempt", task.State, task.Attempt)
	}
	lo, hi := before.Add(time.Hour-time.Minute), after.Add(time.Hour+time.Minute)
	if task.RunAfter.Before(lo) || task.RunAfter.After(hi) {
		t.Fatalf("due again at %s, want about an hour after the run (between %s and %s)", task.RunAfter, lo, hi)
	}
}

// TestTaskRunResults: SUCCESS -> DONE, RETRY -> RETRY, ERROR -> FAILED and an
// unknown result -> FAILED with a message that names it.
func TestTaskRunResults(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	sm := queue.NewSyncManager(e.d)
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		return queue.TaskResult(task.Key), queue.TaskMessage("said " + task.Key)
	}), "res", queue.WithRetryPolicy(queue.ConstantBackoff(time.Hour)))
	ids := map[string]int64{}
	for _, k := range []string{"SUCCESS", "RETRY", "ERROR", "MAYBE"} {
		ids[k] = e.add(t, "res", k, nil)
	}
	if err := sm.RunUntilIdle(e.ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]queue.TaskState{"SUCCESS": queue.TaskDone, "RETRY": queue.TaskRetry, "ERROR": queue.TaskFailed, "MAYBE": queue.TaskFailed}
	for k, id := range ids {
		task := e.task(t, id)
		if task.State != want[k] {
			t.Errorf("result %s: task %s %q, want %s", k, task.State, task.Message, want[k])
		}
		if !strings.Contains(task.Message, "said "+k) {
			t.Errorf("result %s: message %q lost the action's message", k, task.Message)
		}
	}
	if msg := e.task(t, ids["MAYBE"]).Message; !strings.Contains(msg, `"MAYBE"`) {
		t.Errorf("unknown result: message %q does not name the result", msg)
	}
}

// TestTaskRunLeaseExtended: an action that runs longer than the lease keeps
// its task (the lease is extended), and nobody else runs it meanwhile.
func TestTaskRunLeaseExtended(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	var runs atomic.Int64
	var mu sync.Mutex
	var expiries []time.Time
	sm := queue.NewSyncManager(e.d, queue.WithLease(time.Second), queue.WithMaintenanceInterval(50*time.Millisecond))
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		runs.Add(1)
		// Run for two and a half leases, watching the lease move.
		deadline := time.Now().Add(2500 * time.Millisecond)
		for time.Now().Before(deadline) {
			var exp time.Time
			if err := e.db.QueryRow(`SELECT lease_expires_at FROM message_queue WHERE id = $1`, task.ID).Scan(&exp); err == nil {
				mu.Lock()
				expiries = append(expiries, exp)
				mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
		return queue.TaskResultSuccess, "long run"
	}), "long")
	id := e.add(t, "long", "k", nil)
	smRunUntilDone(t, sm, time.Minute)
	task := e.task(t, id)
	if task.State != queue.TaskDone || task.Attempt != 1 || runs.Load() != 1 {
		t.Fatalf("task %s after %d attempts and %d runs, want DONE after 1", task.State, task.Attempt, runs.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	distinct := map[time.Time]bool{}
	for _, x := range expiries {
		distinct[x] = true
	}
	if len(distinct) < 3 {
		t.Fatalf("lease expiry took %d values during a run of 2.5 leases, want it extended several times", len(distinct))
	}
}

// TestTaskRunContextAskedForLate: an action that first asks for its context
// after its run has ended gets one that has ended the same way: past the
// timeout, done with a deadline and context.DeadlineExceeded; after a hard
// stop, done with the shutdown as its cause.
func TestTaskRunContextAskedForLate(t *testing.T) {
	t.Parallel()
	type seen struct {
		done        bool
		hadDeadline bool
		err, cause  error
	}
	look := func(task queue.Task) seen {
		ctx := task.Context()
		_, ok := ctx.Deadline()
		s := seen{hadDeadline: ok, err: ctx.Err(), cause: context.Cause(ctx)}
		select {
		case <-ctx.Done():
			s.done = true
		default:
		}
		return s
	}

	t.Run("after the timeout", func(t *testing.T) {
		t.Parallel()
		e := newSMEnv(t)
		saw := make(chan seen, 1)
		sm := queue.NewSyncManager(e.d)
		sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
			if task.Attempt == 1 {
				time.Sleep(300 * time.Millisecond) // past the timeout, context untouched
				saw <- look(task)
			}
			return queue.TaskResultSuccess, ""
		}), "slow", queue.WithTimeout(50*time.Millisecond), queue.WithRetryPolicy(queue.ConstantBackoff(time.Hour)))
		e.add(t, "slow", "k", nil)
		smStart(t, sm)
		select {
		case s := <-saw:
			if !s.done || !s.hadDeadline || !errors.Is(s.err, context.DeadlineExceeded) {
				t.Fatalf("context asked for after the timeout: done %v, deadline %v, error %v; want done, a deadline, DeadlineExceeded", s.done, s.hadDeadline, s.err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the action never looked at its context")
		}
	})

	t.Run("after a hard stop", func(t *testing.T) {
		t.Parallel()
		e := newSMEnv(t)
		inside := make(chan struct{})
		release := make(chan struct{})
		saw := make(chan seen, 1)
		sm := queue.NewSyncManager(e.d)
		sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
			close(inside)
			<-release // blocks without looking at its context
			saw <- look(task)
			return queue.TaskResultSuccess, "too late"
		}), "stuck")
		id := e.add(t, "stuck", "k", nil)
		if err := sm.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		<-inside
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := sm.Shutdown(ctx); err == nil || !strings.Contains(err.Error(), "still running") {
			t.Fatalf("shutdown: %v, want the action still running reported", err)
		}
		close(release)
		s := <-saw
		if !s.done || !errors.Is(s.err, context.Canceled) || s.cause == nil || !strings.Contains(s.cause.Error(), "shutting down") {
			t.Fatalf("context asked for after the hard stop: done %v, error %v, cause %v; want done, Canceled, the shutdown", s.done, s.err, s.cause)
		}
		if task := e.task(t, id); task.State != queue.TaskInProgress {
			t.Fatalf("after the hard stop the task is %s, want IN PROGRESS (its action was still running)", task.State)
		}
	})
}
