package queue_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/esync/queue"
)

// TestShutdownWaitsForRunningActions: within its deadline Shutdown waits for
// a running action and records its result.
func TestShutdownWaitsForRunningActions(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	id := e.add(t, "job", "k", nil)
	started := make(chan struct{})
	release := make(chan struct{})
	sm := queue.NewSyncManager(e.d)
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		close(started)
		select {
		case <-release:
			return queue.TaskResultSuccess, "finished during shutdown"
		case <-task.Context().Done():
			return queue.TaskResultRetryFailure, "cancelled"
		}
	}), "job")
	if err := sm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-started
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stopped <- sm.Shutdown(ctx)
	}()
	time.Sleep(100 * time.Millisecond) // lets Shutdown begin; the test holds either way
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) while an action was still running within its deadline", err)
	default:
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if task := e.task(t, id); task.State != queue.TaskDone || task.Message != "finished during shutdown" {
		t.Fatalf("task %s %q, want DONE with the action's message", task.State, task.Message)
	}
	// Run's form: Stop makes Run return what the shutdown returned.
	if err := sm.Stop(); err != nil {
		t.Fatalf("a second Stop: %v", err)
	}
}

// TestRunReturnsAfterStop: the original Run blocks until Stop.
func TestRunReturnsAfterStop(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	id := e.add(t, "job", "k", nil)
	sm := queue.NewSyncManager(e.d)
	sm.RegisterTaskHandler(succeed, "job")
	ran := make(chan error, 1)
	go func() { ran <- sm.Run() }()
	smEventually(t, 20*time.Second, "the task to be done", func() bool { return e.task(t, id).State == queue.TaskDone })
	select {
	case err := <-ran:
		t.Fatalf("Run returned (%v) before Stop", err)
	default:
	}
	if err := sm.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ran:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after Stop")
	}
}

// slowMaintenance is a driver whose rescue of expired leases (the first
// step of maintenance) takes until its context ends.
type slowMaintenance struct {
	*queue.PostgresDriver
	inside chan struct{}
	once   sync.Once
}

func (s *slowMaintenance) RescueExpired(ctx context.Context, p queue.RescueParams) (int, error) {
	s.once.Do(func() { close(s.inside) })
	<-ctx.Done()
	return 0, ctx.Err()
}

// TestShutdownQuietWhenClean: a manager shut down cleanly, while it runs a
// schedule and in the middle of a maintenance run, reports no error: the
// cancellation it causes itself is not one.
func TestShutdownQuietWhenClean(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	ids := e.addDistinct(t, "job", 20)
	drv := &slowMaintenance{PostgresDriver: e.d, inside: make(chan struct{})}
	var log errorLog
	sm := queue.NewSyncManager(drv, queue.WithMaintenanceInterval(time.Second))
	sm.SetErrorHandler(log.handle)
	sm.RegisterTaskHandler(succeed, "job")
	sm.Schedule(scheduledFunc{"s", func() error { return nil }}, 20*time.Millisecond)
	if err := sm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.waitCount(t, time.Minute, "job", queue.TaskDone, len(ids))
	select {
	case <-drv.inside:
	case <-time.After(20 * time.Second):
		t.Fatal("maintenance never ran")
	}
	if err := sm.Stop(); err != nil {
		t.Fatal(err)
	}
	if s := log.String(); s != "" {
		t.Fatalf("a clean shutdown reported errors:%s", s)
	}
}

// slowExtend is a driver whose lease extensions take until their context
// ends.
type slowExtend struct {
	*queue.PostgresDriver
	inside chan struct{}
	once   sync.Once
}

func (s *slowExtend) ExtendLeases(ctx context.Context, leases []queue.Lease, d time.Duration) ([]int64, error) {
	s.once.Do(func() { close(s.inside) })
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestShutdownQuietWhileExtendingLeases: a shutdown whose deadline cancels
// running actions in the middle of a lease extension reports no error.
func TestShutdownQuietWhileExtendingLeases(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	id := e.add(t, "job", "k", nil)
	drv := &slowExtend{PostgresDriver: e.d, inside: make(chan struct{})}
	var log errorLog
	sm := queue.NewSyncManager(drv, queue.WithLease(3*time.Second))
	sm.SetErrorHandler(log.handle)
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		<-task.Context().Done()
		return queue.TaskResultRetryFailure, "cancelled"
	}), "job")
	if err := sm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-drv.inside:
	case <-time.After(20 * time.Second):
		t.Fatal("no lease extension started")
	}
	// Too short a deadline for the running action: it is cancelled.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := sm.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if s := log.String(); s != "" {
		t.Fatalf("a shutdown reported errors:%s", s)
	}
	if task := e.task(t, id); task.State != queue.TaskReady || task.Attempt != 0 {
		t.Fatalf("task %s attempt %d, want READY with no attempt used", task.State, task.Attempt)
	}
}

// cancellableSchedule is a scheduled action with DoContext: it blocks until
// its context ends.
type cancellableSchedule struct {
	once      sync.Once
	inside    chan struct{}
	cancelled chan error
}

func (c *cancellableSchedule) Stream() string { return "sched" }
func (c *cancellableSchedule) Do() error      { return c.DoContext(context.Background()) }
func (c *cancellableSchedule) DoContext(ctx context.Context) error {
	first := false
	c.once.Do(func() { first = true; close(c.inside) })
	if first {
		<-ctx.Done()
		c.cancelled <- context.Cause(ctx)
	}
	return nil
}

// TestShutdownCancelsScheduledDoContext: when Shutdown's deadline passes, a
// running scheduled action with DoContext has its context cancelled, so it
// ends and the scheduler stops in time: Shutdown reports no timeout.
func TestShutdownCancelsScheduledDoContext(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	act := &cancellableSchedule{inside: make(chan struct{}), cancelled: make(chan error, 1)}
	var log errorLog
	sm := queue.NewSyncManager(e.d, queue.WithStopTimeout(5*time.Second))
	sm.SetErrorHandler(log.handle)
	if err := sm.Schedule(act, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := sm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-act.inside:
	case <-time.After(20 * time.Second):
		t.Fatal("the scheduled action never ran")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := sm.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v (the scheduled action's context was not cancelled when the deadline passed)", err)
	}
	select {
	case cause := <-act.cancelled:
		if cause == nil || !strings.Contains(cause.Error(), "shutting down") {
			t.Fatalf("the scheduled action's context ended with %v, want the shutdown as cause", cause)
		}
	default:
		t.Fatal("Shutdown returned while the scheduled action was still running")
	}
	if s := log.String(); s != "" {
		t.Fatalf("errors reported:%s", s)
	}
}

// failingFinish is a driver whose Finish fails once fail is set.
type failingFinish struct {
	*queue.PostgresDriver
	fail atomic.Bool
}

var errFinishDown = errors.New("finish refused: database unreachable (test)")

func (f *failingFinish) Finish(ctx context.Context, cs []queue.Completion) ([]int64, error) {
	if f.fail.Load() {
		return nil, errFinishDown
	}
	return f.PostgresDriver.Finish(ctx, cs)
}

// TestShutdownReturnsEveryError: a shutdown that meets a scheduled action
// outliving the stop timeout and a Finish that fails returns both errors.
func TestShutdownReturnsEveryError(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	id := e.add(t, "job", "k", nil)
	drv := &failingFinish{PostgresDriver: e.d}
	var log errorLog
	sm := queue.NewSyncManager(drv, queue.WithStopTimeout(200*time.Millisecond))
	sm.SetErrorHandler(log.handle)
	taskIn := make(chan struct{})
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		close(taskIn)
		<-task.Context().Done()
		return queue.TaskResultSuccess, ""
	}), "job")
	schedIn := make(chan struct{})
	schedRelease := make(chan struct{})
	t.Cleanup(func() { close(schedRelease) })
	var once sync.Once
	sm.Schedule(scheduledFunc{"s", func() error {
		once.Do(func() { close(schedIn) })
		<-schedRelease
		return nil
	}}, 20*time.Millisecond)
	if err := sm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-taskIn
	<-schedIn
	drv.fail.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	err := sm.Shutdown(ctx)
	// The failed write is not retried past the deadline (the retries would
	// take about 13 s); the scheduler's own stop timeout is 200 ms.
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("shutdown took %s with a 100ms deadline: the failed finish was retried past it", took)
	}
	var merr *multierror.Error
	if !errors.As(err, &merr) {
		t.Fatalf("shutdown returned %v (%T), want a multierror", err, err)
	}
	var sched, finish bool
	for _, e := range merr.Errors {
		sched = sched || strings.Contains(e.Error(), "scheduler")
		finish = finish || errors.Is(e, errFinishDown)
	}
	if !sched || !finish {
		t.Fatalf("shutdown returned %v; want the scheduler's stop timeout (%v) and the failed finish (%v) both", err, sched, finish)
	}
	// The task stays claimed; its lease expiry will give it back.
	if task := e.task(t, id); task.State != queue.TaskInProgress {
		t.Fatalf("task %s, want IN PROGRESS (its release could not be written)", task.State)
	}
}
