package queue_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

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

func TestSyncManagerWakesOnNotify(t *testing.T) {
	t.Parallel()
	d := queuetest.NewDriver(t)
	tm := queue.NewTaskManager(d)
	var ran atomic.Int64
	done := make(chan struct{}, 10)
	sm := queue.NewSyncManager(d, queue.WithPollInterval(time.Hour))
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		ran.Add(1)
		done <- struct{}{}
		return queue.TaskResultSuccess, ""
	}), "ping")
	if err := sm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer sm.Stop()
	time.Sleep(200 * time.Millisecond) // let the first (empty) claim and LISTEN happen
	if err := tm.AddTask("ping", "p", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("task added after start did not run: the NOTIFY did not wake the stream (poll interval is an hour)")
	}
}
