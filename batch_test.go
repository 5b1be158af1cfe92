package queue_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esync/queue"
)

// Tests of batch actions (batch_action.go, batch_run.go). The invariants
// across processes are TestMultiProcessBatch's.

// batchLog records the calls of a batch action: the tasks of each call.
type batchLog struct {
	mu    sync.Mutex
	calls [][]queue.Task
}

func (l *batchLog) record(tasks []queue.Task) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, append([]queue.Task(nil), tasks...))
}

// every is n batch results, each res with msg.
func every(n int, res queue.TaskResult, msg queue.TaskMessage) []queue.BatchResult {
	out := make([]queue.BatchResult, n)
	for i := range out {
		out[i] = queue.BatchResult{Result: res, Message: msg}
	}
	return out
}

// sizes returns the number of tasks of each call, in call order.
func (l *batchLog) sizes() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int
	for _, c := range l.calls {
		out = append(out, len(c))
	}
	return out
}

// TestBatchPerTaskResults: one call gets several tasks and its per-task
// results are each task's own: successes end DONE, retries run again (and
// fail once their attempts are used up), permanent failures end FAILED, a
// task the action gave no result for retries. Batches never exceed their
// size.
func TestBatchPerTaskResults(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	specs := make([]queue.TaskSpec, 40)
	for i := range specs {
		specs[i] = queue.TaskSpec{Name: "crm.bulk", Key: fmt.Sprintf("c%02d", i), Data: map[string]any{"i": i}, Options: []queue.AddOption{queue.WithMaxAttempts(2)}}
	}
	ids, err := e.tm.AddMany(e.ctx, specs)
	requireNoError(t, err)
	var log batchLog
	action := queue.BatchActionFunc(func(ctx context.Context, tasks []queue.Task) []queue.BatchResult {
		log.record(tasks)
		out := make([]queue.BatchResult, 0, len(tasks))
		for _, task := range tasks {
			var r queue.BatchResult
			switch i := int(task.Data["i"].(float64)); {
			case i%4 == 0:
				r = queue.BatchResult{Result: queue.TaskResultSuccess, Message: "created"}
			case i%4 == 1: // succeeds on its second attempt
				if task.Attempt == 1 {
					r = queue.BatchResult{Result: queue.TaskResultRetryFailure, Message: "busy"}
				} else {
					r = queue.BatchResult{Result: queue.TaskResultSuccess, Message: "created late"}
				}
			case i%4 == 2:
				r = queue.BatchResult{Result: queue.TaskResultPermanentFailure, Message: "rejected"}
			default: // never succeeds
				r = queue.BatchResult{Result: queue.TaskResultRetryFailure, Message: "always busy"}
			}
			out = append(out, r)
		}
		return out
	})
	sm := queue.NewSyncManager(e.d)
	requireNoError(t, sm.RegisterBatchHandler(action, "crm.bulk", 10, queue.WithRetryPolicy(queue.ConstantBackoff(0))))
	smRunUntilDone(t, sm, time.Minute)

	sizes := log.sizes()
	most := 0
	for _, n := range sizes {
		most = max(most, n)
	}
	if most > 10 || most < 2 {
		t.Fatalf("call sizes %v: want batches of up to 10, some of more than one task", sizes)
	}
	want := map[int]struct {
		state   queue.TaskState
		attempt int
		msg     string
	}{
		0: {queue.TaskDone, 1, "created"},
		1: {queue.TaskDone, 2, "created late"},
		2: {queue.TaskFailed, 1, "rejected"},
		3: {queue.TaskFailed, 2, "always busy"},
	}
	for i, id := range ids {
		w := want[i%4]
		task := e.task(t, id)
		if task.State != w.state || task.Attempt != w.attempt || !strings.Contains(task.Message, w.msg) {
			t.Errorf("task %d (i=%d): %s after %d attempts %q; want %s after %d, %q", id, i, task.State, task.Attempt, task.Message, w.state, w.attempt, w.msg)
		}
	}
}

// TestBatchShortAnswerRetries: tasks the batch action returned no result
// for run again; those it answered keep their answer.
func TestBatchShortAnswerRetries(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	ids := e.addDistinct(t, "bulk", 4)
	var calls atomic.Int64
	sm := queue.NewSyncManager(e.d)
	requireNoError(t, sm.RegisterBatchHandler(queue.BatchActionFunc(func(ctx context.Context, tasks []queue.Task) []queue.BatchResult {
		if calls.Add(1) == 1 {
			return []queue.BatchResult{{Result: queue.TaskResultSuccess}} // one answer for four tasks
		}
		return every(len(tasks), queue.TaskResultSuccess, "second call")
	}), "bulk", 4, queue.WithRetryPolicy(queue.ConstantBackoff(0))))
	smRunUntilDone(t, sm, time.Minute)
	if task := e.task(t, ids[0]); task.State != queue.TaskDone || task.Attempt != 1 {
		t.Fatalf("the answered task: %s after %d attempts, want DONE after 1", task.State, task.Attempt)
	}
	for _, id := range ids[1:] {
		task := e.task(t, id)
		if task.State != queue.TaskDone || task.Attempt != 2 || task.Message != "second call" {
			t.Fatalf("unanswered task %d: %s after %d attempts %q, want DONE by the second call", id, task.State, task.Attempt, task.Message)
		}
		if len(task.Errors) != 1 || !strings.Contains(task.Errors[0].Message, "returned 1 results for 4 tasks") {
			t.Fatalf("unanswered task %d: attempts %+v, want the short answer recorded", id, task.Errors)
		}
	}
}

// TestBatchPanicRetriesEveryTask: a panic in a batch action is a retry of
// every task of the call, with the panic's text.
func TestBatchPanicRetriesEveryTask(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	ids := e.addDistinct(t, "bulk", 5)
	var calls atomic.Int64
	sm := queue.NewSyncManager(e.d)
	requireNoError(t, sm.RegisterBatchHandler(queue.BatchActionFunc(func(ctx context.Context, tasks []queue.Task) []queue.BatchResult {
		if calls.Add(1) == 1 {
			panic("bulk endpoint client bug")
		}
		return make([]queue.BatchResult, len(tasks)) // no result at all: retry again
	}), "bulk", 5, queue.WithRetryPolicy(queue.ConstantBackoff(0)), queue.WithTaskMaxAttempts(2)))
	smRunUntilDone(t, sm, time.Minute)
	for _, id := range ids {
		task := e.task(t, id)
		if task.State != queue.TaskFailed || task.Attempt != 2 || len(task.Errors) != 2 ||
			!strings.Contains(task.Errors[0].Message, "panic in a batch of 5: bulk endpoint client bug") {
			t.Fatalf("task %d: %s after %d attempts, attempts %+v; want the panic recorded as a retry, then FAILED", id, task.State, task.Attempt, task.Errors)
		}
	}
}

// TestBatchTimeoutKeepsSlot: in a stream of concurrency 1, calls that
// ignore their context and overrun a 20ms timeout never run side by side;
// each task records its own result once, saying the call returned late.
func TestBatchTimeoutKeepsSlot(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	ids := e.addDistinct(t, "bulk", 6)
	var m meter
	var sawDeadline atomic.Int64
	sm := queue.NewSyncManager(e.d)
	requireNoError(t, sm.RegisterBatchHandler(queue.BatchActionFunc(func(ctx context.Context, tasks []queue.Task) []queue.BatchResult {
		defer m.enter()()
		time.Sleep(60 * time.Millisecond) // three times the timeout, context ignored
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && errors.Is(tasks[0].Context().Err(), context.DeadlineExceeded) {
			sawDeadline.Add(1)
		}
		return every(len(tasks), queue.TaskResultSuccess, "sent")
	}), "bulk", 2, queue.WithTimeout(20*time.Millisecond)))
	smRunUntilDone(t, sm, time.Minute)
	if most := m.most.Load(); most != 1 {
		t.Fatalf("%d overrunning calls ran at once in a stream of concurrency 1", most)
	}
	if n := m.total.Load(); n != 3 || sawDeadline.Load() != n {
		t.Fatalf("%d calls for 6 tasks in batches of 2, %d of them saw DeadlineExceeded; want 3 and 3", n, sawDeadline.Load())
	}
	e.requireOwnLateResults(t, ids, 20*time.Millisecond)
}

// TestBatchTimeoutKeepsKeys: the tasks of a call that overruns its timeout
// keep their keys until it returns: a newer task of one of its keys waits,
// while a task of another key runs in the stream's free slot.
func TestBatchTimeoutKeepsKeys(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	first := e.addDistinct(t, "bulk", 3)
	release := make(chan struct{})
	timedOut := make(chan struct{})
	var mu sync.Mutex
	var newerRan, firstReturned time.Time
	sm := queue.NewSyncManager(e.d)
	requireNoError(t, sm.ConfigureStream("bulk", queue.WithConcurrency(2)))
	requireNoError(t, sm.RegisterBatchHandler(queue.BatchActionFunc(func(ctx context.Context, tasks []queue.Task) []queue.BatchResult {
		out := every(len(tasks), queue.TaskResultSuccess, "sent")
		if tasks[0].Data["first"] == nil {
			mu.Lock()
			for _, task := range tasks {
				if task.Key == "bulk:0" {
					newerRan = time.Now()
				}
			}
			mu.Unlock()
			return out
		}
		<-ctx.Done()
		close(timedOut)
		<-release // goes on past its timeout
		mu.Lock()
		firstReturned = time.Now()
		mu.Unlock()
		return out
	}), "bulk", 3, queue.WithTimeout(30*time.Millisecond)))
	for _, id := range first {
		_, err := e.db.ExecContext(e.ctx, `UPDATE message_queue SET data = '{"first": true}' WHERE id = $1`, id)
		requireNoError(t, err)
	}
	smStart(t, sm)
	<-timedOut
	newer := e.add(t, "bulk", "bulk:0", nil)
	other := e.add(t, "bulk", "other", nil)
	smEventually(t, 20*time.Second, "the task of another key to run beside the overrunning call", func() bool {
		return e.task(t, other).State == queue.TaskDone
	})
	if task := e.task(t, newer); task.State != queue.TaskReady {
		t.Fatalf("the newer task of a key held by the overrunning call is %s, want READY until the call returns", task.State)
	}
	close(release)
	smEventually(t, 20*time.Second, "the newer task to run", func() bool { return e.task(t, newer).State == queue.TaskDone })
	mu.Lock()
	if newerRan.Before(firstReturned) {
		t.Fatal("the newer task of a key ran before the call holding the key returned")
	}
	mu.Unlock()
	e.requireOwnLateResults(t, first, 30*time.Millisecond)
}

// TestBatchCancelOneTask: an operator's cancellation of one task of a
// running call cancels that task's context only; the call and its other
// tasks go on, and the cancelled task ends CANCELLED unless the action
// says it succeeded.
func TestBatchCancelOneTask(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	ids := e.addDistinct(t, "bulk", 3)
	inside := make(chan []queue.Task, 1)
	seen := make(chan error, 1)
	sm := queue.NewSyncManager(e.d)
	requireNoError(t, sm.RegisterBatchHandler(queue.BatchActionFunc(func(ctx context.Context, tasks []queue.Task) []queue.BatchResult {
		inside <- tasks
		<-tasks[1].Context().Done()
		seen <- ctx.Err()
		out := make([]queue.BatchResult, len(tasks))
		for i, task := range tasks {
			if task.Context().Err() != nil {
				out[i] = queue.BatchResult{Result: queue.TaskResultRetryFailure, Message: "skipped"}
				continue
			}
			out[i] = queue.BatchResult{Result: queue.TaskResultSuccess, Message: "sent"}
		}
		return out
	}), "bulk", 3))
	smStart(t, sm)
	tasks := <-inside
	if len(tasks) != 3 {
		t.Fatalf("one call got %d tasks, want all 3", len(tasks))
	}
	requireNoError(t, e.tm.Cancel(e.ctx, tasks[1].ID))
	if err := <-seen; err != nil {
		t.Fatalf("cancelling one task ended the whole call's context: %v", err)
	}
	smEventually(t, 20*time.Second, "the call's results", func() bool {
		for _, id := range ids {
			if !e.task(t, id).State.Terminal() {
				return false
			}
		}
		return true
	})
	for _, task := range tasks {
		got := e.task(t, task.ID)
		want := queue.TaskDone
		if task.ID == tasks[1].ID {
			want = queue.TaskCancelled
		}
		if got.State != want {
			t.Fatalf("task %d: %s %q, want %s", task.ID, got.State, got.Message, want)
		}
	}
}

// TestBatchLeaseNotExtendedCancelsCall: when the leases of a call's tasks
// cannot be extended, the call's context ends with ErrLeaseLost before they
// expire, and the call keeps its slot until it returns.
func TestBatchLeaseNotExtendedCancelsCall(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	f := newFaultDriver(e.d)
	f.set(faultFail, "ExtendLeases")
	ids := e.addDistinct(t, "bulk", 3)
	cause := make(chan error, 1)
	sm := queue.NewSyncManager(f, queue.WithLease(300*time.Millisecond))
	sm.SetErrorHandler(func(error) {})
	requireNoError(t, sm.RegisterBatchHandler(queue.BatchActionFunc(func(ctx context.Context, tasks []queue.Task) []queue.BatchResult {
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return every(len(tasks), queue.TaskResultSuccess, "sent before the cancel")
	}), "bulk", 3))
	smStart(t, sm)
	select {
	case err := <-cause:
		if !errors.Is(err, queue.ErrLeaseLost) {
			t.Fatalf("the call's context ended with %v, want ErrLeaseLost", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the call was never cancelled while its leases could not be extended")
	}
	f.set(faultNone, "ExtendLeases")
	smEventually(t, 20*time.Second, "the call's results", func() bool {
		for _, id := range ids {
			if e.task(t, id).State != queue.TaskDone {
				return false
			}
		}
		return true
	})
}

// TestBatchHardStop: a shutdown whose deadline passes while a call runs
// cancels the call's context with the shutdown as cause; tasks the call
// gives back as retries are released unrun (READY) with no attempt used up
// for nothing, and another manager runs them.
func TestBatchHardStop(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	ids := e.addDistinct(t, "bulk", 4)
	inside := make(chan struct{})
	cause := make(chan error, 1)
	sm := queue.NewSyncManager(e.d)
	requireNoError(t, sm.RegisterBatchHandler(queue.BatchActionFunc(func(ctx context.Context, tasks []queue.Task) []queue.BatchResult {
		close(inside)
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return every(len(tasks), queue.TaskResultRetryFailure, "cut short")
	}), "bulk", 4))
	requireNoError(t, sm.Start(context.Background()))
	<-inside
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	requireNoError(t, sm.Shutdown(ctx))
	if err := <-cause; err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("the call's context ended with %v, want the shutdown", err)
	}
	for _, id := range ids {
		if task := e.task(t, id); task.State != queue.TaskReady || !strings.Contains(task.Message, "released at shutdown") {
			t.Fatalf("task %d after the hard stop: %s %q, want READY, released", id, task.State, task.Message)
		}
	}
	sm2 := queue.NewSyncManager(smOpen(t, e.dsn))
	requireNoError(t, sm2.RegisterBatchHandler(queue.BatchActionFunc(func(ctx context.Context, tasks []queue.Task) []queue.BatchResult {
		return every(len(tasks), queue.TaskResultSuccess, "")
	}), "bulk", 4))
	smRunUntilDone(t, sm2, time.Minute)
	for _, id := range ids {
		if task := e.task(t, id); task.State != queue.TaskDone {
			t.Fatalf("task %d: %s, want DONE by the second manager", id, task.State)
		}
	}
}

// TestBatchWaitFillsBatch: with WithBatchWait a short claim waits for more
// tasks: five tasks added one at a time run in one call. Without a wait
// the first call takes what was due when it claimed.
func TestBatchWaitFillsBatch(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	var log batchLog
	sm := queue.NewSyncManager(e.d)
	requireNoError(t, sm.RegisterBatchHandler(queue.BatchActionFunc(func(ctx context.Context, tasks []queue.Task) []queue.BatchResult {
		log.record(tasks)
		return every(len(tasks), queue.TaskResultSuccess, "")
	}), "bulk", 5, queue.WithBatchWait(time.Minute)))
	smStart(t, sm)
	e.add(t, "bulk", "k0", nil)
	// The first task is claimed and waits for company.
	smEventually(t, 20*time.Second, "the first task to be claimed", func() bool {
		return e.counts(t, "bulk")[queue.TaskInProgress] == 1
	})
	for i := 1; i < 5; i++ {
		e.add(t, "bulk", fmt.Sprintf("k%d", i), nil)
	}
	e.waitCount(t, 20*time.Second, "bulk", queue.TaskDone, 5)
	if sizes := log.sizes(); len(sizes) != 1 || sizes[0] != 5 {
		t.Fatalf("calls of %v tasks, want one call of the 5 tasks added one at a time", sizes)
	}
}

// TestBatchRateLimitCountsCalls: a stream's rate limit counts calls, not
// tasks: 40 tasks in batches of 10 at 2 calls a second take two windows,
// and no window starts more than its calls (plus those whose permits were
// taken at the end of the window before).
func TestBatchRateLimitCountsCalls(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	e.addDistinct(t, "bulk", 40)
	var mu sync.Mutex
	var starts []time.Time
	var log batchLog
	sm := queue.NewSyncManager(e.d)
	requireNoError(t, sm.ConfigureStream("crm", queue.WithConcurrency(4), queue.WithRateLimit(2, time.Second)))
	requireNoError(t, sm.RegisterBatchHandler(queue.BatchActionFunc(func(ctx context.Context, tasks []queue.Task) []queue.BatchResult {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		log.record(tasks)
		return every(len(tasks), queue.TaskResultSuccess, "")
	}), "bulk", 10, queue.InStream("crm")))
	smRunUntilDone(t, sm, time.Minute)
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, n := range log.sizes() {
		total += n
	}
	if total != 40 {
		t.Fatalf("calls ran %d tasks, want 40 once each", total)
	}
	windows, perWindow := perSecond(starts)
	if len(windows) < 2 {
		t.Fatalf("%d calls in one window at 2 calls a second: %v", len(starts), perWindow)
	}
	for _, w := range windows {
		if n := perWindow[w]; n > 4 {
			t.Fatalf("%d calls started in the second at %d, limit 2 a second: %v", n, w, perWindow)
		}
	}
}

// TestBatchRegistrationRefused: bad batch sizes and waits, middleware on a
// batch action, a batch wait on a task action, and a stream mixing batch
// and task actions are refused at registration, naming the mistake.
func TestBatchRegistrationRefused(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	bulk := queue.BatchActionFunc(func(ctx context.Context, tasks []queue.Task) []queue.BatchResult { return nil })
	mw := func(next queue.TaskAction) queue.TaskAction { return next }
	for _, c := range []struct {
		name     string
		register func(sm *queue.SyncManager) error
		want     string
	}{
		{"nil", func(sm *queue.SyncManager) error { return sm.RegisterBatchHandler(nil, "b", 10) }, "nil batch action"},
		{"size 0", func(sm *queue.SyncManager) error { return sm.RegisterBatchHandler(bulk, "b", 0) }, "batch size must be between 1 and 1000, got 0"},
		{"size too big", func(sm *queue.SyncManager) error { return sm.RegisterBatchHandler(bulk, "b", 1001) }, "got 1001"},
		{"negative wait", func(sm *queue.SyncManager) error {
			return sm.RegisterBatchHandler(bulk, "b", 10, queue.WithBatchWait(-time.Second))
		}, "batch wait must be between 0 and 1m0s"},
		{"middleware", func(sm *queue.SyncManager) error {
			return sm.RegisterBatchHandler(bulk, "b", 10, queue.WithTaskMiddleware(mw))
		}, "WithTaskMiddleware wraps single-task actions"},
		{"wait on a task action", func(sm *queue.SyncManager) error {
			return sm.RegisterTaskHandler(succeed, "t", queue.WithBatchWait(time.Second))
		}, "WithBatchWait is for batch handlers"},
		{"mixed stream", func(sm *queue.SyncManager) error {
			requireNoError(t, sm.RegisterTaskHandler(succeed, "t", queue.InStream("crm")))
			return sm.RegisterBatchHandler(bulk, "b", 10, queue.InStream("crm"))
		}, `stream "crm" holds task action "t"`},
		{"mixed stream, other way", func(sm *queue.SyncManager) error {
			requireNoError(t, sm.RegisterBatchHandler(bulk, "b", 10, queue.InStream("crm")))
			return sm.RegisterTaskHandler(succeed, "t", queue.InStream("crm"))
		}, `stream "crm" holds batch action "b"`},
	} {
		err := c.register(queue.NewSyncManager(e.d))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
}

// TestCDCWrapBatch: a CDC controller's tasks run through a batch action
// wrapped with WrapBatch: the objects that succeeded are recorded as
// synced (a diff after emits nothing for them), an object that failed for
// good is emitted again by the next diff, and a task that is not the
// controller's fails without reaching the action.
func TestCDCWrapBatch(t *testing.T) {
	t.Parallel()
	s := newCDCSetup(t)
	s.exec(t, `INSERT INTO customer SELECT i, 'name ' || i, NULL, i, NULL FROM generate_series(1, 30) i`)
	r := s.taskRunner(t, "customers", customerSource)
	if n := s.run(t, r); n != 30 {
		t.Fatalf("first run emitted %d, want 30 creates", n)
	}
	stray, err := s.tm.Add(s.ctx, cdcTaskNames.Create, "stray", map[string]any{"not": "cdc"})
	requireNoError(t, err)
	var log batchLog
	action := queue.BatchActionFunc(func(ctx context.Context, tasks []queue.Task) []queue.BatchResult {
		log.record(tasks)
		out := make([]queue.BatchResult, len(tasks))
		for i, task := range tasks {
			if task.Data["object_id"] == "7" {
				out[i] = queue.BatchResult{Result: queue.TaskResultPermanentFailure, Message: "CRM rejected the record"}
				continue
			}
			out[i] = queue.BatchResult{Result: queue.TaskResultSuccess}
		}
		return out
	})
	sm := queue.NewSyncManager(s.d)
	wrapped := r.WrapBatch(action)
	for _, n := range []string{cdcTaskNames.Create, cdcTaskNames.Update, cdcTaskNames.Delete} {
		requireNoError(t, sm.RegisterBatchHandler(wrapped, n, 10, queue.InStream("crm")))
	}
	requireNoError(t, sm.RunUntilIdle(s.ctx))

	got := 0
	for _, c := range log.calls {
		for _, task := range c {
			if task.ID == stray {
				t.Fatal("a task that is not the controller's reached the batch action")
			}
		}
		got += len(c)
	}
	if sizes := log.sizes(); got != 30 || len(sizes) > 4 {
		t.Fatalf("calls of %v tasks: want the 30 objects in batches of up to 10", sizes)
	}
	if task, err := s.tm.Get(s.ctx, stray); err != nil || task.State != queue.TaskFailed || !strings.Contains(task.Message, "not a CDC task") {
		t.Fatalf("stray task: %+v %v, want FAILED as not a CDC task", task, err)
	}
	if n := s.run(t, r); n != 1 {
		t.Fatalf("the diff after the batches emitted %d, want 1: the object that failed for good", n)
	}
	if pending := s.pendingActions(t); !equalStrings(pending, []string{"create:7"}) {
		t.Fatalf("pending after the second diff: %v, want create:7", pending)
	}
}

// TestBatchWaitEndsWhenLeasesFail: a batch waiting for company stops
// waiting once the leases of the tasks it holds cannot be extended: the
// call starts at once, its context ended with ErrLeaseLost, instead of
// after its wait, when the leases would long have expired.
func TestBatchWaitEndsWhenLeasesFail(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	f := newFaultDriver(e.d)
	f.set(faultFail, "ExtendLeases")
	e.add(t, "bulk", "k", nil)
	cause := make(chan error, 1)
	sm := queue.NewSyncManager(f, queue.WithLease(300*time.Millisecond))
	sm.SetErrorHandler(func(error) {})
	requireNoError(t, sm.RegisterBatchHandler(queue.BatchActionFunc(func(ctx context.Context, tasks []queue.Task) []queue.BatchResult {
		cause <- context.Cause(ctx)
		return every(len(tasks), queue.TaskResultRetryFailure, "not sent")
	}), "bulk", 10, queue.WithBatchWait(time.Minute)))
	smStart(t, sm)
	select {
	case err := <-cause:
		if !errors.Is(err, queue.ErrLeaseLost) {
			t.Fatalf("the call's context ended with %v, want ErrLeaseLost", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the batch went on waiting for company while its leases could not be extended")
	}
}

// TestBatchReleasedWhenStopWaitsForSlot: tasks of a second batch that wait
// for a slot of their stream when it stops go back to the queue unrun,
// their attempt not counted.
func TestBatchReleasedWhenStopWaitsForSlot(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	a1, a2 := e.add(t, "a", "a1", nil), e.add(t, "a", "a2", nil)
	b1, b2 := e.add(t, "b", "b1", nil), e.add(t, "b", "b2", nil)
	inside := make(chan struct{})
	sm := queue.NewSyncManager(e.d)
	call := queue.BatchActionFunc(func(ctx context.Context, tasks []queue.Task) []queue.BatchResult {
		close(inside)
		<-ctx.Done()
		return every(len(tasks), queue.TaskResultRetryFailure, "cut short")
	})
	requireNoError(t, sm.RegisterBatchHandler(call, "a", 5, queue.InStream("crm")))
	requireNoError(t, sm.RegisterBatchHandler(call, "b", 5, queue.InStream("crm")))
	requireNoError(t, sm.Start(context.Background()))
	<-inside
	// One claim took all four tasks; the second name's batch waits for the
	// stream's only slot.
	smEventually(t, 20*time.Second, "all four tasks claimed", func() bool {
		return e.counts(t, "a")[queue.TaskInProgress]+e.counts(t, "b")[queue.TaskInProgress] == 4
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	requireNoError(t, sm.Shutdown(ctx))
	first, waiting := []int64{a1, a2}, []int64{b1, b2}
	if e.task(t, b1).Message == "released at shutdown before the action finished: cut short" {
		first, waiting = waiting, first // the claim put b's batch first
	}
	for _, id := range waiting {
		if task := e.task(t, id); task.State != queue.TaskReady || task.Attempt != 0 || !strings.Contains(task.Message, "released unrun: the manager stopped") {
			t.Fatalf("task %d of the batch waiting for a slot: %s, attempt %d, %q; want READY, released unrun, no attempt counted", id, task.State, task.Attempt, task.Message)
		}
	}
	for _, id := range first {
		if task := e.task(t, id); task.State != queue.TaskReady || !strings.Contains(task.Message, "released at shutdown") {
			t.Fatalf("task %d of the running call: %s %q, want READY, released at shutdown", id, task.State, task.Message)
		}
	}
}
