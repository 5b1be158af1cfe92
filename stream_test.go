package queue_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esync/queue"
)

// meteredAction enters m for each run and works for a moment, so that runs
// that could overlap do.
func meteredAction(m *meter, work time.Duration) queue.TaskAction {
	return queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		defer m.enter()()
		time.Sleep(work)
		return queue.TaskResultSuccess, ""
	})
}

// TestStreamConcurrencyOneNeverOverlaps: two task names in one stream of
// concurrency 1, many tasks with distinct keys: never two actions at once.
func TestStreamConcurrencyOneNeverOverlaps(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	e.addDistinct(t, "a", 40)
	e.addDistinct(t, "b", 40)
	var m meter
	sm := queue.NewSyncManager(e.d, queue.WithBatchSize(10))
	if err := sm.RegisterTaskHandler(meteredAction(&m, 2*time.Millisecond), "a", queue.InStream("lane")); err != nil {
		t.Fatal(err)
	}
	if err := sm.RegisterTaskHandler(meteredAction(&m, 2*time.Millisecond), "b", queue.InStream("lane")); err != nil {
		t.Fatal(err)
	}
	smRunUntilDone(t, sm, 2*time.Minute)
	if got := m.most.Load(); got != 1 {
		t.Fatalf("at most %d actions ran at once in a stream of concurrency 1, want 1", got)
	}
	if got := m.total.Load(); got != 80 {
		t.Fatalf("%d runs, want 80", got)
	}
	if c := e.counts(t, ""); c[queue.TaskDone] != 80 {
		t.Fatalf("states %v, want 80 DONE", c)
	}
}

// TestStreamsRunSideBySide: two actions in different streams meet at a
// barrier that needs both inside at once.
func TestStreamsRunSideBySide(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	// An action that arrives waits (bounded) until the other has arrived;
	// the first to arrive is still inside when the second comes in.
	var arrived, met atomic.Int64
	barrier := func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		arrived.Add(1)
		deadline := time.Now().Add(20 * time.Second)
		for arrived.Load() < 2 {
			if time.Now().After(deadline) {
				return queue.TaskResultPermanentFailure, "the other stream's action never came in"
			}
			time.Sleep(time.Millisecond)
		}
		met.Add(1)
		return queue.TaskResultSuccess, "met"
	}
	sm := queue.NewSyncManager(e.d)
	sm.RegisterTaskHandler(queue.TaskActionFunc(barrier), "left")  // stream "left"
	sm.RegisterTaskHandler(queue.TaskActionFunc(barrier), "right") // stream "right"
	l := e.add(t, "left", "l", nil)
	r := e.add(t, "right", "r", nil)
	smRunUntilDone(t, sm, time.Minute)
	for _, id := range []int64{l, r} {
		if task := e.task(t, id); task.State != queue.TaskDone {
			t.Fatalf("task %d (%s): %s %q, want DONE: the two streams did not run side by side", id, task.Name, task.State, task.Message)
		}
	}
	if met.Load() != 2 {
		t.Fatalf("%d actions met at the barrier, want 2", met.Load())
	}
}

// TestStreamConcurrencyFour: WithConcurrency(4) reaches 4 actions at once
// and never 5. The first runs wait (bounded) until four are inside, so the
// stream has to fill its slots.
func TestStreamConcurrencyFour(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	e.addDistinct(t, "four", 60)
	var m meter
	sm := queue.NewSyncManager(e.d)
	if err := sm.ConfigureStream("four", queue.WithConcurrency(4)); err != nil {
		t.Fatal(err)
	}
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		defer m.enter()()
		deadline := time.Now().Add(20 * time.Second)
		for m.most.Load() < 4 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(2 * time.Millisecond)
		return queue.TaskResultSuccess, ""
	}), "four")
	smRunUntilDone(t, sm, 2*time.Minute)
	if got := m.most.Load(); got != 4 {
		t.Fatalf("at most %d actions ran at once with WithConcurrency(4), want exactly 4", got)
	}
	if got := m.total.Load(); got != 60 {
		t.Fatalf("%d runs, want 60", got)
	}
}

// TestStreamExclusiveAcrossManagers: two managers on one database with the
// same exclusive stream. Only the lock holder runs tasks (never two at once
// across both); when it shuts down the other takes over and finishes.
func TestStreamExclusiveAcrossManagers(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	e.addDistinct(t, "crm", 30)
	var m meter
	var mu sync.Mutex
	ranBy := map[int][]int64{} // manager -> task ids in run order
	holderDone := make(chan struct{})
	var holder atomic.Int64 // 1 + index of the first manager to run a task
	mgrs := make([]*queue.SyncManager, 2)
	for i := range mgrs {
		i := i
		sm := queue.NewSyncManager(smOpen(t, e.dsn), queue.WithPollInterval(50*time.Millisecond))
		if err := sm.ConfigureStream("crm", queue.Exclusive()); err != nil {
			t.Fatal(err)
		}
		sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
			defer m.enter()()
			holder.CompareAndSwap(0, int64(i+1))
			mu.Lock()
			ranBy[i] = append(ranBy[i], task.ID)
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
			return queue.TaskResultSuccess, ""
		}), "crm")
		mgrs[i] = sm
	}
	for _, sm := range mgrs {
		smStart(t, sm)
	}
	smEventually(t, 30*time.Second, "the holder to run 10 tasks", func() bool {
		mu.Lock()
		defer mu.Unlock()
		h := holder.Load()
		return h > 0 && (len(ranBy[int(h-1)]) >= 10 || len(ranBy[int(2-h)]) > 0)
	})
	h := int(holder.Load() - 1)
	other := 1 - h
	mu.Lock()
	if n := len(ranBy[other]); n != 0 {
		mu.Unlock()
		t.Fatalf("the standby manager ran %d tasks while the holder was running", n)
	}
	mu.Unlock()
	go func() {
		defer close(holderDone)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := mgrs[h].Shutdown(ctx); err != nil {
			t.Errorf("holder shutdown: %v", err)
		}
	}()
	<-holderDone
	mu.Lock()
	byHolder := len(ranBy[h])
	mu.Unlock()
	// Work for the standby, whatever the holder finished before it stopped.
	for i := 0; i < 20; i++ {
		e.add(t, "crm", fmt.Sprintf("late:%d", i), nil)
	}
	e.waitCount(t, time.Minute, "crm", queue.TaskDone, 50)
	mu.Lock()
	defer mu.Unlock()
	if len(ranBy[h]) != byHolder {
		t.Fatalf("the holder ran tasks after its shutdown")
	}
	if len(ranBy[other]) == 0 {
		t.Fatalf("the standby never took over")
	}
	if got := m.most.Load(); got != 1 {
		t.Fatalf("%d actions of the exclusive stream ran at once across the two managers, want 1", got)
	}
	if got := len(ranBy[h]) + len(ranBy[other]); got != 50 {
		t.Fatalf("%d runs for 50 tasks", got)
	}
}
