package queue_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/esync/queue"
)

// TestRateLimitAcrossManagers: a stream limited to 4 runs a second runs at
// most that many per window across three managers, and all its tasks in
// the end.
func TestRateLimitAcrossManagers(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	const limit, tasks = 4, 16
	var mu sync.Mutex
	var starts []time.Time
	action := queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		return queue.TaskResultSuccess, ""
	})
	ids := e.addDistinct(t, "crm.update", tasks)
	began := time.Now()
	for range 3 {
		sm := queue.NewSyncManager(smOpen(t, e.dsn), queue.WithPollInterval(50*time.Millisecond))
		sm.RegisterTaskHandler(action, "crm.update", queue.InStream("crm"))
		requireNoError(t, sm.ConfigureStream("crm", queue.WithConcurrency(4), queue.WithRateLimit(limit, time.Second)))
		smStart(t, sm)
	}
	e.waitCount(t, time.Minute, "crm.update", queue.TaskDone, len(ids))
	// 16 runs at 4 a window need four windows (aligned to whole seconds):
	// the last one starts three seconds after the first one's start.
	if done, earliest := time.Now(), began.Truncate(time.Second).Add(3*time.Second); done.Before(earliest) {
		t.Fatalf("%d runs limited to %d a second were done at %s, before the fourth window began at %s", tasks, limit, done.Format("15:04:05.000"), earliest.Format("15:04:05.000"))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(starts) != tasks {
		t.Fatalf("%d runs for %d tasks", len(starts), tasks)
	}
	// Runs start right after their permit: a window holds its own runs,
	// and at most a window's worth of runs whose permits were taken at the
	// end of the window before.
	windows, perWindow := perSecond(starts)
	for _, w := range windows {
		if n := perWindow[w]; n > 2*limit {
			t.Fatalf("%d runs started in the second at %d, limit %d a second: %v", n, w, limit, perWindow)
		}
	}
	if len(windows) < tasks/limit {
		t.Fatalf("runs started in %d windows, want at least %d at %d a window: %v", len(windows), tasks/limit, limit, perWindow)
	}
}

// perSecond counts times per whole second: the seconds in order, and the
// count of each.
func perSecond(times []time.Time) ([]int64, map[int64]int) {
	count := map[int64]int{}
	for _, at := range times {
		count[at.Unix()]++
	}
	var seconds []int64
	for s := range count {
		seconds = append(seconds, s)
	}
	sort.Slice(seconds, func(i, j int) bool { return seconds[i] < seconds[j] })
	return seconds, count
}

// TestRetryAfterHoldsStreamAcrossManagers: a run that asks for a
// Retry-After in a PauseOnRetryAfter stream holds the stream on every
// manager until then.
func TestRetryAfterHoldsStreamAcrossManagers(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	var mu sync.Mutex
	var starts []time.Time
	action := queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		if task.Key == "limited" && task.Attempt == 1 {
			queue.RetryAfter(task, 1500*time.Millisecond)
			return queue.TaskResultRetryFailure, "429 Too Many Requests"
		}
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		return queue.TaskResultSuccess, ""
	})
	for range 2 {
		sm := queue.NewSyncManager(smOpen(t, e.dsn), queue.WithPollInterval(50*time.Millisecond))
		sm.RegisterTaskHandler(action, "crm.update", queue.InStream("crm"))
		requireNoError(t, sm.ConfigureStream("crm", queue.WithConcurrency(2), queue.PauseOnRetryAfter()))
		smStart(t, sm)
	}
	first := e.add(t, "crm.update", "limited", nil)
	var heldUntil time.Time
	smEventually(t, 20*time.Second, "the stream to be held", func() bool {
		err := e.db.QueryRowContext(e.ctx, `SELECT held_until FROM message_queue_stream_limits WHERE stream = 'crm'`).Scan(&heldUntil)
		return err == nil && heldUntil.After(time.Now().Add(-time.Hour))
	})
	ids := e.addDistinct(t, "crm.update", 6)
	e.waitCount(t, time.Minute, "crm.update", queue.TaskDone, len(ids)+1)
	mu.Lock()
	defer mu.Unlock()
	for _, s := range starts {
		if s.Before(heldUntil) {
			t.Fatalf("a run started at %s, before the stream's hold ended at %s", s.Format("15:04:05.000"), heldUntil.Format("15:04:05.000"))
		}
	}
	if task := e.task(t, first); task.State != queue.TaskDone || task.Attempt != 2 {
		t.Fatalf("the limited task: %s after %d attempts", task.State, task.Attempt)
	}
}

// TestRateLimitOptionChecked: a rate limit out of range is refused.
func TestRateLimitOptionChecked(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	sm := queue.NewSyncManager(e.d)
	for _, opt := range []queue.StreamOption{queue.WithRateLimit(-1, time.Second), queue.WithRateLimit(5, 0)} {
		if err := sm.ConfigureStream("crm", opt); err == nil {
			t.Fatal("a bad rate limit was accepted")
		}
	}
}

// TestRateLimitClaimsNoMoreThanAWindow: a rate-limited stream with more
// slots than a window's permits claims no more than a window allows, so no
// task is claimed only to go back to the queue unrun: with one manager,
// every task is claimed once, single runs and batches alike.
func TestRateLimitClaimsNoMoreThanAWindow(t *testing.T) {
	t.Parallel()
	for _, batch := range []int{0, 5} {
		t.Run(fmt.Sprintf("batch %d", batch), func(t *testing.T) {
			t.Parallel()
			e := newSMEnv(t)
			ids := e.addDistinct(t, "crm.update", 20)
			w := &claimWatcher{PostgresDriver: e.d}
			sm := queue.NewSyncManager(w, queue.WithPollInterval(50*time.Millisecond))
			requireNoError(t, sm.ConfigureStream("crm", queue.WithConcurrency(8), queue.WithRateLimit(2, 100*time.Millisecond)))
			if batch > 0 {
				requireNoError(t, sm.RegisterBatchHandler(queue.BatchActionFunc(func(ctx context.Context, tasks []queue.Task) []queue.BatchResult {
					return every(len(tasks), queue.TaskResultSuccess, "")
				}), "crm.update", batch, queue.InStream("crm")))
			} else {
				requireNoError(t, sm.RegisterTaskHandler(succeed, "crm.update", queue.InStream("crm")))
			}
			smRunUntilDone(t, sm, time.Minute)
			for _, id := range ids {
				if n := len(w.leasesOf(id)); n != 1 {
					t.Fatalf("task %d was claimed %d times: claims took more than a window's permits and handed tasks back", id, n)
				}
			}
		})
	}
}
