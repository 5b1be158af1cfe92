package queue_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// This file holds the SyncManager's general tests and the helpers shared by
// stream_test.go, task_run_test.go, schedule_test.go, shutdown_test.go and
// multiprocess_test.go. Helper names start with sm to stay clear of the
// driver tests' helpers.

// smEnv is a migrated queue on a database of the test's own.
type smEnv struct {
	ctx context.Context
	dsn string
	d   *queue.PostgresDriver
	db  *sql.DB
	tm  *queue.TaskManager
}

func newSMEnv(t *testing.T) *smEnv {
	t.Helper()
	dsn := queuetest.NewDSN(t)
	d := smOpen(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return &smEnv{ctx: ctx, dsn: dsn, d: d, db: d.DB(), tm: queue.NewTaskManager(d)}
}

// smOpen opens another driver on dsn, closed when the test ends.
func smOpen(t *testing.T, dsn string) *queue.PostgresDriver {
	t.Helper()
	d, err := queue.OpenPostgres(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// add adds one task and returns its ID.
func (e *smEnv) add(t *testing.T, name, key string, data any, opts ...queue.AddOption) int64 {
	t.Helper()
	id, err := e.tm.Add(e.ctx, name, key, data, opts...)
	if err != nil {
		t.Fatalf("add %s/%s: %v", name, key, err)
	}
	return id
}

// addDistinct adds n tasks named name, each with a key of its own.
func (e *smEnv) addDistinct(t *testing.T, name string, n int) []int64 {
	t.Helper()
	specs := make([]queue.TaskSpec, n)
	for i := range specs {
		specs[i] = queue.TaskSpec{Name: name, Key: fmt.Sprintf("%s:%d", name, i), Data: map[string]any{"i": i}}
	}
	ids, err := e.tm.AddMany(e.ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// requireOwnLateResults fails unless each task of ids is DONE after one
// attempt with its action's own result, saying it returned after its
// timeout.
func (e *smEnv) requireOwnLateResults(t *testing.T, ids []int64, timeout time.Duration) {
	t.Helper()
	for _, id := range ids {
		task := e.task(t, id)
		if task.State != queue.TaskDone || task.Attempt != 1 || !strings.Contains(task.Message, "after its "+timeout.String()+" timeout") {
			t.Fatalf("task %d: %s after %d attempts %q; want DONE after 1 attempt, its own result, saying it returned after its %s timeout",
				id, task.State, task.Attempt, task.Message, timeout)
		}
	}
}

// task reads one task.
func (e *smEnv) task(t *testing.T, id int64) queue.Task {
	t.Helper()
	task, err := e.tm.Get(e.ctx, id)
	if err != nil {
		t.Fatalf("get task %d: %v", id, err)
	}
	return task
}

// counts returns the number of tasks named name per state.
func (e *smEnv) counts(t *testing.T, name string) map[queue.TaskState]int {
	t.Helper()
	c, err := e.tm.CountByState(e.ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitCount waits until n tasks named name are in state.
func (e *smEnv) waitCount(t *testing.T, timeout time.Duration, name string, state queue.TaskState, n int) {
	t.Helper()
	smEventually(t, timeout, fmt.Sprintf("%d %s tasks %s", n, name, state), func() bool {
		return e.counts(t, name)[state] == n
	})
}

// smEventually polls cond every 20ms until it holds, and fails the test if it
// does not within timeout. It never asserts how long anything took.
func smEventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// smStart starts sm and shuts it down when the test ends (if the test has
// not already).
func smStart(t *testing.T, sm *queue.SyncManager) {
	t.Helper()
	if err := sm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sm.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
}

// smStop shuts sm down (smStart's cleanup then does nothing more).
func smStop(t *testing.T, sm *queue.SyncManager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sm.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// smRunUntilDone runs sm until every task of its names has finished.
func smRunUntilDone(t *testing.T, sm *queue.SyncManager, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := sm.RunUntilDone(ctx); err != nil {
		t.Fatalf("RunUntilDone: %v", err)
	}
}

// meter counts how many callers are inside at once and remembers the most.
type meter struct {
	now, most, total atomic.Int64
}

// enter records an entry; call the returned func on the way out.
func (m *meter) enter() func() {
	n := m.now.Add(1)
	m.total.Add(1)
	for {
		most := m.most.Load()
		if n <= most || m.most.CompareAndSwap(most, n) {
			break
		}
	}
	return func() { m.now.Add(-1) }
}

// errorLog collects what a manager reports to its error handler.
type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorLog) handle(err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

// find returns the first error whose text contains s.
func (l *errorLog) find(s string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, err := range l.errs {
		if strings.Contains(err.Error(), s) {
			return err
		}
	}
	return nil
}

func (l *errorLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, err := range l.errs {
		fmt.Fprintf(&b, "\n\t%v", err)
	}
	return b.String()
}

// succeed is an action that does nothing and succeeds.
var succeed = queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
	return queue.TaskResultSuccess, "ok"
})

// claimWatcher is a driver that remembers its claims, so that a test can
// wait until a stream has made an empty claim (and so is idle, waiting for a
// nudge or its poll interval), and can read the leases claims handed out and
// the completions the manager sent for them.
// Embedding the PostgresDriver keeps its LISTEN, maintenance and exclusive
// lock capabilities.
type claimWatcher struct {
	*queue.PostgresDriver
	mu         sync.Mutex
	calls      int
	lastEmpty  int // number of the last claim that found nothing
	leases     map[int64][]queue.Lease
	finished   map[leaseName][]queue.Completion
	afterFirst func() // called once, after the first claim, before it returns
}

// leaseName is what names a lease: the task and the claim's token.
type leaseName struct {
	id    int64
	token string
}

func (w *claimWatcher) Finish(ctx context.Context, cs []queue.Completion) ([]int64, error) {
	w.mu.Lock()
	if w.finished == nil {
		w.finished = map[leaseName][]queue.Completion{}
	}
	for _, c := range cs {
		n := leaseName{c.Lease.TaskID, c.Lease.Token}
		w.finished[n] = append(w.finished[n], c)
	}
	w.mu.Unlock()
	return w.PostgresDriver.Finish(ctx, cs)
}

// finishes returns the completions the manager sent for a lease.
func (w *claimWatcher) finishes(l queue.Lease) []queue.Completion {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]queue.Completion(nil), w.finished[leaseName{l.TaskID, l.Token}]...)
}

func (w *claimWatcher) Claim(ctx context.Context, p queue.ClaimParams) ([]queue.ClaimedTask, error) {
	got, err := w.PostgresDriver.Claim(ctx, p)
	w.mu.Lock()
	w.calls++
	first := w.calls == 1
	if err == nil && len(got) == 0 {
		w.lastEmpty = w.calls
	}
	if w.leases == nil {
		w.leases = map[int64][]queue.Lease{}
	}
	for _, c := range got {
		w.leases[c.ID] = append(w.leases[c.ID], c.Lease)
	}
	after := w.afterFirst
	w.mu.Unlock()
	if first && after != nil {
		after()
	}
	return got, err
}

// idle reports whether the latest claim found nothing.
func (w *claimWatcher) idle() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls > 0 && w.lastEmpty == w.calls
}

func (w *claimWatcher) leasesOf(id int64) []queue.Lease {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]queue.Lease(nil), w.leases[id]...)
}

// recordingAction records the keys and data it ran and answers with result.
type recordingAction struct {
	mu     sync.Mutex
	ran    []queue.Task
	result queue.TaskResult
}

func (a *recordingAction) Do(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ran = append(a.ran, task)
	return a.result, "ok"
}

func (a *recordingAction) runs() []queue.Task {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]queue.Task(nil), a.ran...)
}

func TestSyncManagerRunsTasksUntilIdle(t *testing.T) {
	t.Parallel()
	d := queuetest.NewDriver(t)
	tm := queue.NewTaskManager(d)
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		if err := tm.AddTask("work", "k"+string(rune('a'+i%5)), map[string]any{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	act := &recordingAction{result: queue.TaskResultSuccess}
	sm := queue.NewSyncManager(d)
	if err := sm.RegisterTaskHandler(act, "work"); err != nil {
		t.Fatal(err)
	}
	if err := sm.RunUntilIdle(ctx); err != nil {
		t.Fatal(err)
	}
	runs := act.runs()
	if len(runs) != 5 {
		t.Fatalf("ran %d tasks, want 5 (newest per key)", len(runs))
	}
	for _, r := range runs {
		if got := int(r.Data["i"].(float64)); got < 45 {
			t.Errorf("key %s ran data i=%d, want the newest (>= 45)", r.Key, got)
		}
	}
	counts, err := tm.CountByState(ctx, "work")
	if err != nil {
		t.Fatal(err)
	}
	if counts[queue.TaskDone] != 5 || counts[queue.TaskSuperseded] != 45 {
		t.Fatalf("states = %v, want 5 DONE and 45 SUPERSEDED", counts)
	}
}

// TestSyncManagerWakesOnNotify: with an hour's poll interval only a NOTIFY
// can wake an idle stream. The task is added once the stream has made an
// empty claim after the listener started, so a poll cannot find it.
func TestSyncManagerWakesOnNotify(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	w := &claimWatcher{PostgresDriver: e.d}
	done := make(chan struct{}, 10)
	sm := queue.NewSyncManager(w, queue.WithPollInterval(time.Hour))
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		done <- struct{}{}
		return queue.TaskResultSuccess, ""
	}), "ping")
	smStart(t, sm)
	smEventually(t, 20*time.Second, "the stream's first empty claim", w.idle)
	e.add(t, "ping", "p", nil)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("task added after start did not run: the NOTIFY did not wake the stream (poll interval is an hour)")
	}
}

// TestSyncManagerNotifyRightAfterFirstClaim: a task added just after the
// stream's very first claim (which found nothing) is announced by NOTIFY; the
// manager must already be listening then, or with an hour's poll interval
// the task waits an hour. Whether a manager that starts listening late
// misses the NOTIFY depends on timing, so the test starts several managers.
func TestSyncManagerNotifyRightAfterFirstClaim(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	for round := 0; round < 8; round++ {
		w := &claimWatcher{PostgresDriver: e.d}
		key := fmt.Sprintf("p%d", round)
		w.afterFirst = func() {
			if _, err := e.tm.Add(e.ctx, "ping", key, nil); err != nil {
				t.Error(err)
			}
		}
		done := make(chan struct{}, 10)
		sm := queue.NewSyncManager(w, queue.WithPollInterval(time.Hour))
		sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
			done <- struct{}{}
			return queue.TaskResultSuccess, ""
		}), "ping")
		if err := sm.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			sm.Stop()
			t.Fatalf("round %d: a task added right after the first claim did not run: its NOTIFY was missed (not listening yet?)", round)
		}
		if err := sm.Stop(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSyncManagerPollsWithoutListen: with LISTEN off a stream still finds a
// task added while it is idle, by polling.
func TestSyncManagerPollsWithoutListen(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	w := &claimWatcher{PostgresDriver: e.d}
	sm := queue.NewSyncManager(w, queue.WithListen(false), queue.WithPollInterval(100*time.Millisecond))
	var ran atomic.Int64
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		ran.Add(1)
		return queue.TaskResultSuccess, ""
	}), "ping")
	smStart(t, sm)
	smEventually(t, 20*time.Second, "the stream's first empty claim", w.idle)
	id := e.add(t, "ping", "p", nil)
	smEventually(t, 20*time.Second, "the task to be found by polling and done", func() bool {
		return e.task(t, id).State == queue.TaskDone
	})
	if ran.Load() != 1 {
		t.Fatalf("action ran %d times, want 1", ran.Load())
	}
}

// TestSyncManagerMiddlewareOrder: Use's middleware wraps WithTaskMiddleware's,
// and within each the first listed is the outermost.
func TestSyncManagerMiddlewareOrder(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	var mu sync.Mutex
	var trace []string
	note := func(s string) {
		mu.Lock()
		trace = append(trace, s)
		mu.Unlock()
	}
	mw := func(name string) queue.Middleware {
		return func(next queue.TaskAction) queue.TaskAction {
			return queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
				note(name + ">")
				res, msg := next.Do(task)
				note("<" + name)
				return res, msg
			})
		}
	}
	sm := queue.NewSyncManager(e.d)
	sm.Use(mw("use1"), mw("use2"))
	err := sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		note("action")
		return queue.TaskResultSuccess, ""
	}), "mw", queue.WithTaskMiddleware(mw("task1"), mw("task2")))
	if err != nil {
		t.Fatal(err)
	}
	sm.Use(mw("use3")) // added after registration, still before Start
	e.add(t, "mw", "k", nil)
	smRunUntilDone(t, sm, time.Minute)
	want := []string{"use1>", "use2>", "use3>", "task1>", "task2>", "action", "<task2", "<task1", "<use3", "<use2", "<use1"}
	if !reflect.DeepEqual(trace, want) {
		t.Fatalf("trace %v\nwant  %v", trace, want)
	}
}

// TestSyncManagerCancelsUnknownNames: maintenance cancels due tasks whose name
// has no handler, with a message naming the name.
func TestSyncManagerCancelsUnknownNames(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	id := e.add(t, "nobody-handles-this", "k", nil)
	known := e.add(t, "known", "k2", nil)
	sm := queue.NewSyncManager(e.d, queue.WithMaintenanceInterval(50*time.Millisecond), queue.WithPollInterval(50*time.Millisecond))
	sm.RegisterTaskHandler(succeed, "known")
	smStart(t, sm)
	smEventually(t, 20*time.Second, "the unknown task to be cancelled", func() bool {
		return e.task(t, id).State == queue.TaskCancelled
	})
	task := e.task(t, id)
	if !strings.Contains(task.Message, `"nobody-handles-this"`) {
		t.Fatalf("message %q does not name the task name", task.Message)
	}
	if task.Attempt != 0 {
		t.Fatalf("attempts %d, want 0: the unknown task never ran", task.Attempt)
	}
	smEventually(t, 20*time.Second, "the known task to run", func() bool {
		return e.task(t, known).State == queue.TaskDone
	})
}

// TestSyncManagerCancelUnhandledOff: with WithCancelUnhandled(false) an
// unknown task stays READY however often maintenance runs.
func TestSyncManagerCancelUnhandledOff(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	id := e.add(t, "nobody-handles-this", "k", nil)
	sm := queue.NewSyncManager(e.d, queue.WithMaintenanceInterval(50*time.Millisecond), queue.WithCancelUnhandled(false))
	sm.RegisterTaskHandler(succeed, "known")
	var t0 time.Time
	if err := e.db.QueryRowContext(e.ctx, `SELECT now()`).Scan(&t0); err != nil {
		t.Fatal(err)
	}
	smStart(t, sm)
	// Maintenance runs record themselves in the schedule table; two runs
	// started after t0 mean one complete run (cancel sweep included) came
	// after the task was due.
	seen := map[time.Time]bool{}
	smEventually(t, 20*time.Second, "two maintenance runs", func() bool {
		var last time.Time
		err := e.db.QueryRowContext(e.ctx, `SELECT last_started FROM message_queue_schedule WHERE name = 'esync:maintenance'`).Scan(&last)
		if err == nil && last.After(t0) {
			seen[last] = true
		}
		return len(seen) >= 2
	})
	if st := e.task(t, id).State; st != queue.TaskReady {
		t.Fatalf("unknown task is %s, want READY with WithCancelUnhandled(false)", st)
	}
}

// TestSyncManagerRegistrationErrors: registrations that cannot work are
// refused, and nothing can be registered once the manager runs.
func TestSyncManagerRegistrationErrors(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	sm := queue.NewSyncManager(e.d)
	if err := sm.RegisterTaskHandler(nil, "x"); err == nil {
		t.Error("nil action accepted")
	}
	if err := sm.RegisterTaskHandler(succeed, ""); err == nil {
		t.Error("empty name accepted")
	}
	if err := sm.RegisterTaskHandler(succeed, "x", queue.WithTimeout(0)); err == nil {
		t.Error("zero timeout accepted")
	}
	if err := sm.RegisterTaskHandler(succeed, "x"); err != nil {
		t.Fatal(err)
	}
	if err := sm.RegisterTaskHandler(succeed, "x"); err == nil {
		t.Error("second handler for one name accepted")
	}
	if err := sm.ConfigureStream("s", queue.WithConcurrency(0)); err == nil {
		t.Error("concurrency 0 accepted")
	}
	smStart(t, sm)
	if err := sm.RegisterTaskHandler(succeed, "y"); err == nil {
		t.Error("registration after Start accepted")
	}
	if err := sm.ConfigureStream("t"); err == nil {
		t.Error("stream configured after Start")
	}
	if err := sm.Start(context.Background()); err == nil {
		t.Error("second Start accepted")
	}
}

// TestRunUntilIdleWithQuietStream: a second stream with nothing to do must
// not keep RunUntilIdle waiting for its poll interval (an hour here) after
// the first stream's results were written.
func TestRunUntilIdleWithQuietStream(t *testing.T) {
	t.Parallel()
	d := queuetest.NewDriver(t)
	tm := queue.NewTaskManager(d)
	for i := 0; i < 20; i++ {
		if err := tm.AddTask("busy", fmt.Sprintf("k%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	sm := queue.NewSyncManager(d, queue.WithPollInterval(time.Hour))
	ok := queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) { return queue.TaskResultSuccess, "" })
	if err := sm.RegisterTaskHandler(ok, "busy"); err != nil {
		t.Fatal(err)
	}
	if err := sm.RegisterTaskHandler(ok, "quiet"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := sm.RunUntilIdle(ctx); err != nil {
		t.Fatalf("RunUntilIdle: %v (the quiet stream was never asked again)", err)
	}
	if n, err := tm.Count(context.Background(), queue.TaskFilter{Name: "busy", States: []queue.TaskState{queue.TaskDone}}); err != nil || n != 20 {
		t.Fatalf("%d busy tasks DONE (%v), want 20", n, err)
	}
}

// TestRunOnce: one task runs (the oldest key's newest task), the others stay
// READY; with nothing due RunOnce says ErrNoTasks.
func TestRunOnce(t *testing.T) {
	t.Parallel()
	d := queuetest.NewDriver(t)
	tm := queue.NewTaskManager(d)
	for i := 0; i < 5; i++ {
		if err := tm.AddTask("job", fmt.Sprintf("k%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	var ran []string
	var mu sync.Mutex
	job := queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		mu.Lock()
		ran = append(ran, task.Key)
		mu.Unlock()
		return queue.TaskResultSuccess, ""
	})
	newManager := func() *queue.SyncManager {
		sm := queue.NewSyncManager(d)
		if err := sm.RegisterTaskHandler(job, "job", queue.InStream("lane")); err != nil {
			t.Fatal(err)
		}
		sm.ConfigureStream("lane", queue.WithConcurrency(4))
		return sm
	}
	ctx := context.Background()
	if err := newManager().RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if len(ran) != 1 || ran[0] != "k0" {
		t.Fatalf("RunOnce ran %v, want [k0]", ran)
	}
	if n, _ := tm.Count(ctx, queue.TaskFilter{States: []queue.TaskState{queue.TaskReady}}); n != 4 {
		t.Fatalf("%d tasks READY after RunOnce, want 4", n)
	}
	for i := 0; i < 4; i++ {
		if err := newManager().RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := newManager().RunOnce(ctx); !errors.Is(err, queue.ErrNoTasks) {
		t.Fatalf("RunOnce on an empty queue: %v, want ErrNoTasks", err)
	}
	if len(ran) != 5 {
		t.Fatalf("ran %v, want 5 tasks", ran)
	}
}

// overlapWatcher makes the first claim wait until a second claim is on its
// way, and records the most claims seen at once.
type overlapWatcher struct {
	*queue.PostgresDriver
	mu       sync.Mutex
	inFlight int
	most     int
	second   chan struct{} // closed when two claims are on their way
}

func (w *overlapWatcher) Claim(ctx context.Context, p queue.ClaimParams) ([]queue.ClaimedTask, error) {
	w.mu.Lock()
	w.inFlight++
	w.most = max(w.most, w.inFlight)
	if w.inFlight == 2 {
		select {
		case <-w.second:
		default:
			close(w.second)
		}
	}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.inFlight--
		w.mu.Unlock()
	}()
	select {
	case <-w.second:
	case <-time.After(10 * time.Second):
		return nil, errors.New("no second claim came while the first waited")
	}
	return w.PostgresDriver.Claim(ctx, p)
}

// TestStreamWithTwoClaimLoops: a stream that can run two batches at once
// claims with two loops, never more, and RunUntilIdle still waits until
// every task ran (a loop's empty claim while the other loop holds tasks not
// yet started must not count as idle).
func TestStreamWithTwoClaimLoops(t *testing.T) {
	t.Parallel()
	d := queuetest.NewDriver(t)
	tm := queue.NewTaskManager(d)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for round := range 3 {
		specs := make([]queue.TaskSpec, 300)
		for i := range specs {
			specs[i] = queue.TaskSpec{Name: "work", Key: fmt.Sprintf("r%d-k%d", round, i)}
		}
		if _, err := tm.AddMany(ctx, specs); err != nil {
			t.Fatal(err)
		}
		w := &overlapWatcher{PostgresDriver: d, second: make(chan struct{})}
		sm := queue.NewSyncManager(w, queue.WithBatchSize(4))
		var ran atomic.Int64
		act := queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
			ran.Add(1)
			time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
			return queue.TaskResultSuccess, ""
		})
		if err := sm.RegisterTaskHandler(act, "work"); err != nil {
			t.Fatal(err)
		}
		if err := sm.ConfigureStream("work", queue.WithConcurrency(16)); err != nil {
			t.Fatal(err)
		}
		if err := sm.RunUntilIdle(ctx); err != nil {
			t.Fatal(err)
		}
		if w.most != 2 {
			t.Fatalf("round %d: at most %d claims at once, want 2", round, w.most)
		}
		if n, err := tm.Count(ctx, queue.TaskFilter{Name: "work", States: []queue.TaskState{queue.TaskDone}}); err != nil || n != 300*(round+1) {
			t.Fatalf("round %d: %d tasks DONE (%v) when RunUntilIdle returned, want %d", round, n, err, 300*(round+1))
		}
		if ran.Load() != 300 {
			t.Fatalf("round %d: %d runs, want 300", round, ran.Load())
		}
	}
}
