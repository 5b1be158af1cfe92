package queue_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esync/queue"
)

// TestPauseStreamAcrossManagers: a stream paused through the TaskManager
// starts nothing on any of two managers (a task running at the pause
// finishes), stays paused for a manager started afterwards, and runs its
// tasks on resume.
func TestPauseStreamAcrossManagers(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	inside := make(chan struct{})
	release := make(chan struct{})
	var ran atomic.Int64
	action := queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		if task.Key == "running" {
			close(inside)
			<-release
		}
		ran.Add(1)
		return queue.TaskResultSuccess, ""
	})
	var watchers []*claimWatcher
	newManager := func() *queue.SyncManager {
		w := &claimWatcher{PostgresDriver: smOpen(t, e.dsn)}
		watchers = append(watchers, w)
		sm := queue.NewSyncManager(w, queue.WithPollInterval(50*time.Millisecond))
		sm.RegisterTaskHandler(action, "crm.update", queue.InStream("crm"))
		sm.ConfigureStream("crm", queue.WithConcurrency(2)) // a slot free beside the running task
		return sm
	}
	first := e.add(t, "crm.update", "running", nil)
	a, b := newManager(), newManager()
	smStart(t, a)
	smStart(t, b)
	<-inside
	requireNoError(t, e.tm.PauseStream(e.ctx, "crm", "test"))
	ids := e.addDistinct(t, "crm.update", 5)
	// Both managers claim (woken by the inserts, or polling) and find
	// nothing while the stream is paused.
	for _, w := range watchers {
		w.mu.Lock()
		n := w.calls
		w.mu.Unlock()
		smEventually(t, 20*time.Second, "an empty claim after the pause", func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.lastEmpty > n
		})
	}
	close(release)
	smEventually(t, 20*time.Second, "the task running at the pause to finish", func() bool { return e.task(t, first).State == queue.TaskDone })
	for _, id := range ids {
		if task := e.task(t, id); task.State != queue.TaskReady {
			t.Fatalf("task %d is %s while its stream is paused", id, task.State)
		}
	}
	smStop(t, a)
	smStop(t, b)
	paused, err := e.tm.PausedStreams(e.ctx)
	if err != nil || len(paused) != 1 || paused[0].Stream != "crm" || paused[0].PausedBy != "test" {
		t.Fatalf("paused streams: %+v, %v; want crm paused by test", paused, err)
	}
	// A manager started now sees the pause too.
	c := newManager()
	smStart(t, c)
	w := watchers[len(watchers)-1]
	smEventually(t, 20*time.Second, "the new manager's empty claim", func() bool { return w.idle() })
	if n := ran.Load(); n != 1 {
		t.Fatalf("%d tasks ran, want only the one running at the pause", n)
	}
	if was, err := e.tm.ResumeStream(e.ctx, "crm"); err != nil || !was {
		t.Fatalf("resume: %v, %v", was, err)
	}
	e.waitCount(t, time.Minute, "crm.update", queue.TaskDone, len(ids)+1)
}

// TestCancelRunningTask: cancelling a running task from another connection
// cancels the action's context on the manager running it, with
// ErrCancelRequested, and the task ends CANCELLED; told by NOTIFY, or, with
// notifications off, by the next lease extension. An action that succeeds
// anyway is DONE.
func TestCancelRunningTask(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		listen  bool
		succeed bool
		want    queue.TaskState
	}{
		{"notify", true, false, queue.TaskCancelled},
		{"lease extension", false, false, queue.TaskCancelled},
		{"succeeds anyway", true, true, queue.TaskDone},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newSMEnv(t)
			inside := make(chan struct{})
			cause := make(chan error, 1)
			sm := queue.NewSyncManager(e.d, queue.WithListen(c.listen), queue.WithLease(600*time.Millisecond))
			sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
				close(inside)
				<-task.Context().Done()
				cause <- context.Cause(task.Context())
				if c.succeed {
					return queue.TaskResultSuccess, "finished anyway"
				}
				return queue.TaskResultRetryFailure, "stopped"
			}), "job")
			id := e.add(t, "job", "k", nil)
			smStart(t, sm)
			<-inside
			other := queue.NewTaskManager(smOpen(t, e.dsn))
			requireNoError(t, other.Cancel(e.ctx, id))
			select {
			case err := <-cause:
				if !errors.Is(err, queue.ErrCancelRequested) {
					t.Fatalf("the action's context ended with %v, want ErrCancelRequested", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the running action was never cancelled")
			}
			smEventually(t, 20*time.Second, "the task to finish", func() bool { return e.task(t, id).State.Terminal() })
			task := e.task(t, id)
			if task.State != c.want || (c.want == queue.TaskCancelled && !strings.Contains(task.Message, "cancelled by request")) {
				t.Fatalf("task %s %q, want %s", task.State, task.Message, c.want)
			}
			requireErrorIs(t, other.Cancel(e.ctx, id), queue.ErrNotCancellable)
		})
	}
}

// TestCancelRequestedTaskRescuedCancelled: a running task whose
// cancellation was requested and whose worker died ends CANCELLED when its
// lease expires, not RETRY.
func TestCancelRequestedTaskRescuedCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.add(t, "job", "k", nil)
	b.claimLease(t, 1, time.Millisecond)
	requireNoError(t, b.tm.Cancel(b.ctx, id))
	eventually(t, 10*time.Second, "the lease to expire", func() bool {
		return b.count(t, `SELECT count(*) FROM %s WHERE lease_expires_at < now()`) == 1
	})
	n, err := b.driver.RescueExpired(b.ctx, queue.RescueParams{})
	if err != nil || n != 1 {
		t.Fatalf("rescue: %d, %v", n, err)
	}
	if r := b.row(t, id); r.State != "CANCELLED" || !strings.Contains(r.Message, "cancelled by request") {
		t.Fatalf("rescued task %s %q, want CANCELLED", r.State, r.Message)
	}
}
