package queue_test

import (
	"bytes"
	"context"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/esync/queue"
)

// workerGoroutines counts the goroutines of the process that are stream
// workers, running a task or waiting for one.
func workerGoroutines(t *testing.T) int {
	t.Helper()
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 2); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range bytes.Split(buf.Bytes(), []byte("\n\n")) {
		if bytes.Contains(g, []byte("queue.(*SyncManager).work(")) {
			n++
		}
	}
	return n
}

// TestStreamWorkersRetire: a stream keeps workers between tasks; once it
// has had no work for a poll interval they end, and none is left after
// Shutdown. Not parallel: it counts the process's goroutines.
func TestStreamWorkersRetire(t *testing.T) {
	e := newSMEnv(t)
	sm := queue.NewSyncManager(e.d, queue.WithPollInterval(100*time.Millisecond), queue.WithBatchSize(20))
	if err := sm.ConfigureStream("job", queue.WithConcurrency(20)); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
		<-hold
		return queue.TaskResultSuccess, ""
	}), "job")
	before := workerGoroutines(t)
	e.addDistinct(t, "job", 20)
	smStart(t, sm)
	smEventually(t, 20*time.Second, "20 workers to run the 20 tasks", func() bool { return workerGoroutines(t)-before == 20 })
	close(hold)
	e.waitCount(t, 20*time.Second, "job", queue.TaskDone, 20)
	smEventually(t, 20*time.Second, "the idle workers to retire", func() bool { return workerGoroutines(t) == before })

	// Workers come back with work, and Shutdown ends them.
	e.addDistinct(t, "job", 20)
	e.waitCount(t, 20*time.Second, "job", queue.TaskDone, 40)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sm.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	smEventually(t, 10*time.Second, "no worker left after Shutdown", func() bool { return workerGoroutines(t) == before })
}
