package queue_test

import (
	"testing"
	"time"

	"github.com/esync/queue"
)

// QueueStats counts the unfinished tasks per name and state, reports how
// long the oldest due task has waited, leaves finished tasks out, and works
// on a queue whose schema and table need quoting.
func TestQueueStats(t *testing.T) {
	t.Parallel()
	b := setup(t, queue.WithSchema("ops"), queue.WithTable("select"))
	b.add(t, "job", "job:1", nil)
	b.add(t, "job", "job:2", nil)
	b.add(t, "job", "job:3", nil)
	b.add(t, "later", "later:1", nil, queue.WithDelay(time.Hour))
	b.add(t, "done", "done:1", nil)
	if got := b.claim(t, 1, "job"); len(got) != 1 {
		t.Fatalf("claimed %d", len(got))
	}
	finished := b.claim(t, 1, "done")
	if _, err := b.driver.Finish(b.ctx, []queue.Completion{{Lease: finished[0].Lease, State: queue.TaskDone}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.ExecContext(b.ctx, `UPDATE `+b.table+` SET do_after = now() - interval '1 minute' WHERE task_key = 'job:2'`); err != nil {
		t.Fatal(err)
	}

	stats, err := b.driver.QueueStats(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	type nameState struct {
		name  string
		state queue.TaskState
	}
	got := map[nameState]queue.QueueStat{}
	for _, s := range stats {
		got[nameState{s.Name, s.State}] = s
	}
	if len(got) != 3 {
		t.Fatalf("stats %+v, want job READY, job IN PROGRESS and later READY only", stats)
	}
	if s := got[nameState{"job", queue.TaskReady}]; s.Count != 2 || s.OldestDueWait < time.Minute || s.OldestDueWait > time.Hour {
		t.Errorf("job READY: %+v, want 2 tasks, the oldest due a minute ago", s)
	}
	if s := got[nameState{"job", queue.TaskInProgress}]; s.Count != 1 || s.OldestDueWait != 0 {
		t.Errorf("job IN PROGRESS: %+v, want 1 task and no wait (running tasks are not due)", s)
	}
	if s := got[nameState{"later", queue.TaskReady}]; s.Count != 1 || s.OldestDueWait != 0 {
		t.Errorf("later READY: %+v, want 1 task, not due yet", s)
	}
}
