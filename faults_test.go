package queue_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esync/queue"
)

// The tests in this file hold the guarantees under faults: timeouts,
// leases that cannot be extended, database outages, lost replies, hung
// calls and bad settings. Most use faultDriver (fault_driver_test.go);
// outage_test.go stops and restarts a real PostgreSQL.

// TestTimeoutKeepsStreamSlot: in a stream of concurrency 1, actions that
// ignore their context and overrun a 20ms timeout never run side by side;
// each records its own result once, saying it returned late.
func TestTimeoutKeepsStreamSlot(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	ids := e.addDistinct(t, "slow", 10)
	var m meter
	var sawDeadline atomic.Int64
	sm := queue.NewSyncManager(e.d)
	err := sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		defer m.enter()()
		time.Sleep(60 * time.Millisecond) // three times the timeout, context ignored
		if errors.Is(task.Context().Err(), context.DeadlineExceeded) {
			sawDeadline.Add(1)
		}
		return queue.TaskResultSuccess, "done"
	}), "slow", queue.WithTimeout(20*time.Millisecond))
	requireNoError(t, err)
	smRunUntilDone(t, sm, time.Minute)
	if most := m.most.Load(); most != 1 {
		t.Fatalf("%d overrunning actions ran at once in a stream of concurrency 1", most)
	}
	if n := m.total.Load(); n != int64(len(ids)) {
		t.Fatalf("%d runs for %d tasks: a timed-out task ran again", n, len(ids))
	}
	if n := sawDeadline.Load(); n != int64(len(ids)) {
		t.Fatalf("%d of %d actions saw their context end with DeadlineExceeded", n, len(ids))
	}
	e.requireOwnLateResults(t, ids, 20*time.Millisecond)
}

// TestTimeoutKeepsKey: a task whose action overruns its timeout keeps its
// key: a newer task of the key added meanwhile does not start until the
// action returns, even in a stream with free slots.
func TestTimeoutKeepsKey(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	w := &claimWatcher{PostgresDriver: e.d}
	timedOut := make(chan struct{})
	release := make(chan struct{})
	var firstEnded atomic.Int64 // unix nanos
	secondStarted := make(chan int64, 1)
	sm := queue.NewSyncManager(w)
	requireNoError(t, sm.ConfigureStream("job", queue.WithConcurrency(4)))
	err := sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		if task.Data["n"] == "first" {
			<-task.Context().Done()
			close(timedOut)
			<-release // goes on long after its timeout
			firstEnded.Store(time.Now().UnixNano())
			return queue.TaskResultSuccess, "first"
		}
		secondStarted <- time.Now().UnixNano()
		return queue.TaskResultSuccess, "second"
	}), "job", queue.WithTimeout(50*time.Millisecond))
	requireNoError(t, err)
	first := e.add(t, "job", "k", map[string]any{"n": "first"})
	smStart(t, sm)
	<-timedOut
	second := e.add(t, "job", "k", map[string]any{"n": "second"})
	// The insert's NOTIFY makes the stream claim: it must find nothing.
	w.mu.Lock()
	before := w.calls
	w.mu.Unlock()
	smEventually(t, 20*time.Second, "an empty claim after the second task was added", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.lastEmpty > before
	})
	select {
	case <-secondStarted:
		t.Fatal("a newer task of the key started while the timed-out action was still running")
	default:
	}
	close(release)
	var started int64
	select {
	case started = <-secondStarted:
	case <-time.After(20 * time.Second):
		t.Fatal("the newer task never ran")
	}
	if started < firstEnded.Load() {
		t.Fatal("the newer task started before the first action returned")
	}
	smEventually(t, 20*time.Second, "both tasks to finish", func() bool { return e.task(t, second).State == queue.TaskDone })
	if task := e.task(t, first); task.State != queue.TaskDone || !strings.Contains(task.Message, "timeout") {
		t.Fatalf("first task %s %q, want DONE with its own late result", task.State, task.Message)
	}
}

// TestTimeoutOverrunReported: an action that goes on well past its timeout
// is reported to the error handler while it runs.
func TestTimeoutOverrunReported(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	var log errorLog
	sm := queue.NewSyncManager(e.d)
	sm.SetErrorHandler(log.handle)
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		for log.find("still running") == nil {
			time.Sleep(10 * time.Millisecond)
		}
		return queue.TaskResultSuccess, "finally"
	}), "stuck", queue.WithTimeout(20*time.Millisecond))
	id := e.add(t, "stuck", "k", nil)
	smRunUntilDone(t, sm, time.Minute)
	err := log.find("still running")
	if !strings.Contains(err.Error(), fmt.Sprintf("task %d", id)) || !strings.Contains(err.Error(), "20ms timeout") {
		t.Fatalf("overrun report %q, want the task and its timeout named", err)
	}
	if task := e.task(t, id); task.State != queue.TaskDone || task.Attempt != 1 {
		t.Fatalf("task %s attempt %d, want DONE after 1 attempt", task.State, task.Attempt)
	}
}

// TestLeaseNotExtendedCancelsRun: with every lease extension failing, a
// running action's context is cancelled with ErrLeaseLost before its lease
// expires; the run keeps the stream's slot until the action returns, and
// its own result is then recorded.
func TestLeaseNotExtendedCancelsRun(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	f := newFaultDriver(e.d)
	f.set(faultFail, "ExtendLeases")
	type cancelled struct {
		at    time.Time
		cause error
	}
	saw := make(chan cancelled, 1)
	release := make(chan struct{})
	otherRan := make(chan struct{})
	var log errorLog
	sm := queue.NewSyncManager(f, queue.WithLease(300*time.Millisecond))
	sm.SetErrorHandler(log.handle)
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		if task.Key == "other" {
			close(otherRan)
			return queue.TaskResultSuccess, ""
		}
		<-task.Context().Done()
		saw <- cancelled{time.Now(), context.Cause(task.Context())}
		<-release // and goes on
		return queue.TaskResultSuccess, "finished after losing the lease locally"
	}), "job")
	id := e.add(t, "job", "k", nil)
	smStart(t, sm)
	var c cancelled
	select {
	case c = <-saw:
	case <-time.After(20 * time.Second):
		t.Fatal("the action's context was never cancelled while its lease could not be extended")
	}
	if !errors.Is(c.cause, queue.ErrLeaseLost) {
		t.Fatalf("context cancelled with %v, want ErrLeaseLost", c.cause)
	}
	claimedAt := e.task(t, id).LastAttempted
	if !c.at.Before(claimedAt.Add(300 * time.Millisecond)) {
		t.Fatalf("cancelled %s after the claim, not before the 300ms lease expired", c.at.Sub(claimedAt))
	}
	// The slot stays held: a task of another key, added now, waits for the
	// action, through several more (failing) extensions.
	e.add(t, "job", "other", nil)
	n := f.count("ExtendLeases")
	smEventually(t, 20*time.Second, "three more extension attempts", func() bool { return f.count("ExtendLeases") >= n+3 })
	select {
	case <-otherRan:
		t.Fatal("another task started in the concurrency-1 stream while the cancelled action still ran")
	default:
	}
	close(release)
	select {
	case <-otherRan:
	case <-time.After(20 * time.Second):
		t.Fatal("the other task never ran")
	}
	smEventually(t, 20*time.Second, "the task's result", func() bool { return e.task(t, id).State == queue.TaskDone })
	if log.find("lease") == nil {
		t.Fatal("the lost lease was not reported")
	}
}

// TestResultsSurviveOutage: results that cannot be written while the
// database is unreachable for longer than the lease are kept, with their
// leases, and written when it answers again: no task runs twice and no
// result is reported lost.
func TestResultsSurviveOutage(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	f := newFaultDriver(e.d)
	var log errorLog
	inside := make(chan struct{}, 3)
	release := make(chan struct{})
	var runs sync.Map // task id -> *atomic.Int64
	sm := queue.NewSyncManager(f, queue.WithLease(time.Second), queue.WithMaintenanceInterval(100*time.Millisecond),
		queue.WithPollInterval(50*time.Millisecond))
	sm.SetErrorHandler(log.handle)
	requireNoError(t, sm.ConfigureStream("job", queue.WithConcurrency(3)))
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		n, _ := runs.LoadOrStore(task.ID, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		inside <- struct{}{}
		<-release
		if task.Key == "k0" {
			return queue.TaskResultPermanentFailure, "failed for good"
		}
		return queue.TaskResultSuccess, "ok"
	}), "job")
	ids := e.addDistinct(t, "job", 3)
	smStart(t, sm)
	for range ids {
		<-inside
	}
	f.downFor(2500 * time.Millisecond) // longer than two leases
	close(release)
	smEventually(t, 30*time.Second, "every result written", func() bool {
		for _, id := range ids {
			if !e.task(t, id).State.Terminal() {
				return false
			}
		}
		return true
	})
	for _, id := range ids {
		n, _ := runs.Load(id)
		if got := n.(*atomic.Int64).Load(); got != 1 {
			t.Errorf("task %d ran %d times", id, got)
		}
		if task := e.task(t, id); task.Attempt != 1 || (task.State != queue.TaskDone && task.State != queue.TaskFailed) {
			t.Errorf("task %d: %s after %d attempts, want its own result after 1", id, task.State, task.Attempt)
		}
	}
	if err := log.find("lease lost"); err != nil {
		t.Fatalf("a result was reported lost: %v", err)
	}
	if f.count("Finish") < 2 {
		t.Fatalf("Finish called %d times, want the failed writes retried", f.count("Finish"))
	}
}

// TestLostFinishReplyNotLeaseLost: a Finish that commits and then loses its
// reply is sent again, and the manager does not report the result lost.
func TestLostFinishReplyNotLeaseLost(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	f := newFaultDriver(e.d)
	f.set(faultLoseOnce, "Finish")
	var log errorLog
	sm := queue.NewSyncManager(f)
	sm.SetErrorHandler(log.handle)
	var runs atomic.Int64
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		runs.Add(1)
		return queue.TaskResultSuccess, "sent"
	}), "job")
	id := e.add(t, "job", "k", nil)
	smRunUntilDone(t, sm, time.Minute)
	if task := e.task(t, id); task.State != queue.TaskDone || task.Message != "sent" || runs.Load() != 1 {
		t.Fatalf("task %s %q after %d runs, want DONE once", task.State, task.Message, runs.Load())
	}
	if f.count("Finish") < 2 {
		t.Fatalf("Finish called %d times, want the lost reply retried", f.count("Finish"))
	}
	if err := log.find("lease lost"); err != nil {
		t.Fatalf("a recorded result was reported lost: %v", err)
	}
}

// TestHardStopKeepsRunningTasks: a Shutdown whose deadline passes while
// actions still run (ignoring their cancelled contexts) does not release
// their tasks: it reports them, and they stay IN PROGRESS until their
// leases expire; then another manager rescues and runs them.
func TestHardStopKeepsRunningTasks(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	ids := e.addDistinct(t, "job", 5)
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	var inside atomic.Int64
	var mu sync.Mutex
	var seen []error // what the blocked actions saw
	sm := queue.NewSyncManager(e.d, queue.WithLease(500*time.Millisecond))
	requireNoError(t, sm.ConfigureStream("job", queue.WithConcurrency(3)))
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		inside.Add(1)
		ctx := task.Context()
		<-ctx.Done()
		mu.Lock()
		seen = append(seen, context.Cause(ctx))
		mu.Unlock()
		<-stuck // and never returns while the test runs
		return queue.TaskResultSuccess, "too late"
	}), "job")
	requireNoError(t, sm.Start(context.Background()))
	smEventually(t, 20*time.Second, "three actions to block", func() bool { return inside.Load() == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := sm.Shutdown(ctx)
	if err == nil || !strings.Contains(err.Error(), "3 actions still running") {
		t.Fatalf("shutdown returned %v, want the 3 actions still running reported", err)
	}
	mu.Lock()
	if len(seen) != 3 {
		t.Fatalf("%d blocked actions saw their context end, want 3", len(seen))
	}
	for _, cause := range seen {
		if cause == nil || !strings.Contains(cause.Error(), "shutting down") {
			t.Errorf("a blocked action's context ended with %v, want the shutdown as cause", cause)
		}
	}
	mu.Unlock()
	running := 0
	for _, id := range ids {
		switch task := e.task(t, id); task.State {
		case queue.TaskInProgress:
			running++
		case queue.TaskReady:
		default:
			t.Fatalf("task %d after shutdown: %s %q", id, task.State, task.Message)
		}
	}
	if running != 3 {
		t.Fatalf("%d tasks IN PROGRESS after the hard stop, want the 3 whose actions still run", running)
	}

	sm2 := queue.NewSyncManager(smOpen(t, e.dsn), queue.WithLease(200*time.Millisecond), queue.WithMaintenanceInterval(50*time.Millisecond))
	sm2.RegisterTaskHandler(succeed, "job", queue.WithRetryPolicy(queue.ConstantBackoff(0)))
	smRunUntilDone(t, sm2, time.Minute)
	for _, id := range ids {
		if task := e.task(t, id); task.State != queue.TaskDone {
			t.Fatalf("task %d: %s, want DONE after the rescue", id, task.State)
		}
	}
}

// TestStartWithoutDatabase: Start and Shutdown honour their contexts while
// the database cannot be reached at all.
func TestStartWithoutDatabase(t *testing.T) {
	t.Parallel()
	d, err := queue.OpenPostgres("host=127.0.0.1 port=1 user=esync dbname=esync sslmode=disable connect_timeout=2")
	requireNoError(t, err)
	defer d.Close()
	var log errorLog
	sm := queue.NewSyncManager(d, queue.WithPollInterval(50*time.Millisecond))
	sm.SetErrorHandler(log.handle)
	sm.RegisterTaskHandler(succeed, "job")
	sm.Schedule(scheduledFunc{"s", func() error { return nil }}, time.Second)
	bounded := func(what string, call func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- call(ctx) }()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("%s with a 500ms context had not returned after 10s", what)
			return nil
		}
	}
	if err := bounded("Start", sm.Start); err != nil {
		t.Fatalf("Start: %v", err)
	}
	smEventually(t, 20*time.Second, "the failing claims to be reported", func() bool { return log.find("claim") != nil })
	bounded("Shutdown", sm.Shutdown)
}

// TestShutdownBoundedByHangingCalls: a claim or a Finish that hangs (an
// unreachable host, a lock) does not hold Shutdown past its deadline.
func TestShutdownBoundedByHangingCalls(t *testing.T) {
	t.Parallel()
	for _, call := range []string{"Claim", "Finish"} {
		t.Run(call, func(t *testing.T) {
			t.Parallel()
			e := newSMEnv(t)
			f := newFaultDriver(e.d)
			f.set(faultHang, call)
			sm := queue.NewSyncManager(f)
			sm.RegisterTaskHandler(succeed, "job")
			e.add(t, "job", "k", nil)
			requireNoError(t, sm.Start(context.Background()))
			select {
			case <-f.faulted(call):
			case <-time.After(20 * time.Second):
				t.Fatalf("no %s call", call)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- sm.Shutdown(ctx) }()
			select {
			case err := <-done:
				if call == "Finish" && (err == nil || !strings.Contains(err.Error(), "not written")) {
					t.Fatalf("shutdown returned %v, want the unwritten result reported", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("Shutdown(200ms) still blocked after 10s by a hanging %s", call)
			}
		})
	}
}

// TestRescueAppliesRetryPolicy: a task whose worker died is rescued with
// its retry policy's backoff, not due at once, and the attempt counts.
func TestRescueAppliesRetryPolicy(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	id := e.add(t, "job", "k", nil)
	// A worker that claims the task and dies.
	got, err := e.d.Claim(e.ctx, queue.ClaimParams{Names: []string{"job"}, Limit: 1, Lease: 100 * time.Millisecond})
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %v %v", got, err)
	}
	sm := queue.NewSyncManager(e.d, queue.WithLease(200*time.Millisecond), queue.WithMaintenanceInterval(50*time.Millisecond))
	var runs atomic.Int64
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
		runs.Add(1)
		return queue.TaskResultSuccess, ""
	}), "job", queue.WithRetryPolicy(queue.ConstantBackoff(time.Hour)))
	smStart(t, sm)
	smEventually(t, 20*time.Second, "the rescue", func() bool { return e.task(t, id).State != queue.TaskInProgress })
	task := e.task(t, id)
	if task.State != queue.TaskRetry || task.Attempt != 1 || !strings.Contains(task.Message, "lease expired") {
		t.Fatalf("rescued task: %s attempt %d %q; want RETRY after attempt 1, saying its lease expired", task.State, task.Attempt, task.Message)
	}
	if wait := time.Until(task.RunAfter); wait < 50*time.Minute {
		t.Fatalf("rescued task due in %s, want the policy's hour", wait)
	}
	if runs.Load() != 0 {
		t.Fatal("the rescued task ran again at once")
	}
}

// TestRescueWaitsAfterServerStart: right after the database server
// started, expired leases are not rescued: their holders get a lease's time
// to renew them.
func TestRescueWaitsAfterServerStart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "job", "k", nil)
	b.claimLease(t, 1, time.Millisecond)
	var up time.Duration
	if err := b.db.QueryRowContext(b.ctx, `SELECT (extract(epoch FROM now() - pg_postmaster_start_time()) * 1e9)::bigint`).Scan(&up); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the lease to expire", func() bool {
		return b.count(t, `SELECT count(*) FROM %s WHERE lease_expires_at < now()`) == 1
	})
	n, err := b.driver.RescueExpired(b.ctx, queue.RescueParams{RestartGrace: up + time.Hour})
	if err != nil || n != 0 {
		t.Fatalf("rescue within the restart grace: %d, %v; want nothing", n, err)
	}
	n, err = b.driver.RescueExpired(b.ctx, queue.RescueParams{RestartGrace: 0})
	if err != nil || n != 1 {
		t.Fatalf("rescue after the restart grace: %d, %v; want the task", n, err)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestClaimFaultsBackOffAndReportOnce: while claims fail, a stream backs
// off (doubling from the poll interval) instead of retrying every poll
// interval, reports the fault once, and logs its recovery once.
func TestClaimFaultsBackOffAndReportOnce(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	f := newFaultDriver(e.d)
	f.set(faultFail, "Claim")
	var log errorLog
	var logged syncBuffer
	sm := queue.NewSyncManager(f, queue.WithPollInterval(10*time.Millisecond), queue.WithListen(false),
		queue.WithLogger(slog.New(slog.NewTextHandler(&logged, nil))))
	sm.SetErrorHandler(log.handle)
	sm.RegisterTaskHandler(succeed, "job")
	began := time.Now()
	smStart(t, sm)
	smEventually(t, 30*time.Second, "six failed claims", func() bool { return f.count("Claim") >= 6 })
	// Waits of 10, 20, 40, 80 and 160ms come between the first six claims;
	// at one per poll interval they would take 50ms.
	if took := time.Since(began); took < 300*time.Millisecond {
		t.Fatalf("six failing claims within %s: no backoff", took)
	}
	f.set(faultNone, "Claim")
	id := e.add(t, "job", "k", nil)
	smEventually(t, 30*time.Second, "the task to run after the recovery", func() bool { return e.task(t, id).State == queue.TaskDone })
	log.mu.Lock()
	reports := 0
	for _, err := range log.errs {
		if strings.Contains(err.Error(), "claim") {
			reports++
		}
	}
	log.mu.Unlock()
	if reports != 1 {
		t.Fatalf("%d claim faults reported for one streak, want 1:%s", reports, log.String())
	}
	if n := strings.Count(logged.String(), "esync: recovered"); n != 1 {
		t.Fatalf("recovery logged %d times, want once:\n%s", n, logged.String())
	}
}

// TestBadSettingsRefused: option values out of range give a clear error
// from Start or from the registration, never a panic or a busy loop in a
// background goroutine.
func TestBadSettingsRefused(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	for _, c := range []struct {
		opt  queue.ManagerOption
		want string
	}{
		{queue.WithLease(0), "WithLease"},
		{queue.WithLease(-time.Second), "WithLease"},
		{queue.WithMaintenanceInterval(0), "WithMaintenanceInterval"},
		{queue.WithPollInterval(0), "WithPollInterval"},
		{queue.WithLogger(nil), "WithLogger"},
		{queue.WithBatchSize(0), "WithBatchSize"},
		{queue.WithStopTimeout(-time.Second), "WithStopTimeout"},
	} {
		sm := queue.NewSyncManager(e.d, c.opt)
		sm.RegisterTaskHandler(succeed, "job")
		err := sm.Start(context.Background())
		if err == nil {
			sm.Stop()
			t.Fatalf("Start with a bad %s: no error", c.want)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Fatalf("Start with a bad %s: %v, want the option named", c.want, err)
		}
		if err := sm.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown after a failed Start: %v", err)
		}
	}
	for _, c := range []struct {
		opt  queue.TaskOption
		want string
	}{
		{queue.WithRetryPolicy(queue.ExponentialBackoff{}), "Base"},
		{queue.WithRetryPolicy(queue.ExponentialBackoff{Base: time.Second, Jitter: 2}), "Jitter"},
		{queue.WithRetryPolicy(queue.ExponentialBackoff{Base: time.Minute, Max: time.Second}), "Max"},
		{queue.WithRetryPolicy(queue.ConstantBackoff(-time.Second)), "negative"},
		{queue.WithRetryPolicy(nil), "retry policy"},
		{queue.WithTaskMaxAttempts(-1), "max attempts"},
		{queue.WithTimeout(0), "timeout"},
	} {
		sm := queue.NewSyncManager(e.d)
		err := sm.RegisterTaskHandler(succeed, "job", c.opt)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("register with a bad option: %v, want an error about %s", err, c.want)
		}
	}
}

// plainDriver implements Driver by forwarding to a PostgresDriver, and
// nothing else: a wrapper written for metrics without embedding.
type plainDriver struct{ d *queue.PostgresDriver }

func (p plainDriver) AddTasks(ctx context.Context, tx *sql.Tx, ts []queue.NewTask) ([]int64, error) {
	return p.d.AddTasks(ctx, tx, ts)
}
func (p plainDriver) Claim(ctx context.Context, c queue.ClaimParams) ([]queue.ClaimedTask, error) {
	return p.d.Claim(ctx, c)
}
func (p plainDriver) Finish(ctx context.Context, cs []queue.Completion) ([]int64, error) {
	return p.d.Finish(ctx, cs)
}
func (p plainDriver) ExtendLeases(ctx context.Context, ls []queue.Lease, d time.Duration) ([]int64, error) {
	return p.d.ExtendLeases(ctx, ls, d)
}
func (p plainDriver) RescueExpired(ctx context.Context, r queue.RescueParams) (int, error) {
	return p.d.RescueExpired(ctx, r)
}
func (p plainDriver) DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error) {
	return p.d.DeleteFinished(ctx, before, limit)
}
func (p plainDriver) GetTask(ctx context.Context, id int64) (queue.Task, error) {
	return p.d.GetTask(ctx, id)
}
func (p plainDriver) ListTasks(ctx context.Context, f queue.TaskFilter) ([]queue.Task, error) {
	return p.d.ListTasks(ctx, f)
}
func (p plainDriver) CountTasks(ctx context.Context, f queue.TaskFilter) (int, error) {
	return p.d.CountTasks(ctx, f)
}
func (p plainDriver) CountByState(ctx context.Context, name string) (map[queue.TaskState]int, error) {
	return p.d.CountByState(ctx, name)
}
func (p plainDriver) CancelTask(ctx context.Context, id int64, msg string) error {
	return p.d.CancelTask(ctx, id, msg)
}
func (p plainDriver) CancelKey(ctx context.Context, key, msg string) (int, error) {
	return p.d.CancelKey(ctx, key, msg)
}
func (p plainDriver) RetryTask(ctx context.Context, id int64) error { return p.d.RetryTask(ctx, id) }
func (p plainDriver) Close() error                                  { return nil }

// forwardingDriver adds the capabilities a SyncManager needs, forwarded
// to the PostgresDriver.
type forwardingDriver struct {
	plainDriver
	queue.RunRecorder
	queue.ProcessRegistrar
	queue.ExclusiveLocker
}

func newForwardingDriver(d *queue.PostgresDriver) forwardingDriver {
	return forwardingDriver{plainDriver{d}, d, d, d}
}

// TestWrappedDriverCapabilities: a driver that wraps PostgresDriver without
// forwarding what the manager needs is refused at Start with the missing
// method named, instead of silently running exclusive streams, schedules
// and maintenance on every process; one that forwards them runs.
func TestWrappedDriverCapabilities(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	for _, c := range []struct {
		driver queue.Driver
		setup  func(*queue.SyncManager)
		want   string
	}{
		{plainDriver{e.d}, func(*queue.SyncManager) {}, "StartScheduledRun"},
		{struct {
			plainDriver
			queue.RunRecorder
		}{plainDriver{e.d}, e.d}, func(*queue.SyncManager) {}, "CancelUnhandledFleet"},
		{struct {
			plainDriver
			queue.RunRecorder
			queue.ProcessRegistrar
		}{plainDriver{e.d}, e.d, e.d}, func(sm *queue.SyncManager) {
			sm.Schedule(scheduledFunc{"s", func() error { return nil }}, time.Second)
		}, "ClaimFiring"},
		{struct {
			plainDriver
			queue.RunRecorder
		}{plainDriver{e.d}, e.d}, func(sm *queue.SyncManager) { sm.ConfigureStream("job", queue.Exclusive()) }, "TryExclusive"},
	} {
		sm := queue.NewSyncManager(c.driver)
		sm.RegisterTaskHandler(succeed, "job")
		c.setup(sm)
		if c.want == "TryExclusive" {
			sm = queue.NewSyncManager(c.driver, queue.WithCancelUnhandled(false))
			sm.RegisterTaskHandler(succeed, "job")
			c.setup(sm)
		}
		err := sm.Start(context.Background())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			sm.Stop()
			t.Fatalf("Start with %T: %v, want an error naming %s", c.driver, err, c.want)
		}
	}
	// Two managers over forwarding wrappers share the exclusive stream.
	var m meter
	ids := e.addDistinct(t, "job", 20)
	var managers []*queue.SyncManager
	for range 2 {
		sm := queue.NewSyncManager(newForwardingDriver(e.d), queue.WithPollInterval(20*time.Millisecond))
		requireNoError(t, sm.ConfigureStream("job", queue.Exclusive(), queue.WithConcurrency(2)))
		sm.RegisterTaskHandler(meteredAction(&m, 5*time.Millisecond), "job")
		smStart(t, sm)
		managers = append(managers, sm)
	}
	e.waitCount(t, time.Minute, "job", queue.TaskDone, len(ids))
	if most := m.most.Load(); most > 2 {
		t.Fatalf("%d actions of the exclusive stream ran at once on two managers, want at most its concurrency 2", most)
	}
}
