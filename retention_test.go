package queue_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
)

// addFinished adds n tasks named name and moves them to state, finished
// ago in the past, with plain SQL.
func (e *smEnv) addFinished(t *testing.T, name string, n int, state queue.TaskState, ago time.Duration) {
	t.Helper()
	e.addDistinct(t, name, n)
	_, err := e.db.ExecContext(e.ctx, `UPDATE message_queue SET state = $1, finished_at = now() - make_interval(secs => $2)
		WHERE task_name = $3`, string(state), ago.Seconds(), name)
	if err != nil {
		t.Fatal(err)
	}
}

// TestRetentionPerState: one retention pass deletes what is past its
// state's retention and keeps the rest: DONE and SUPERSEDED follow
// WithRetention (1h), CANCELLED is kept 3h, FAILED forever.
func TestRetentionPerState(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	for _, st := range []queue.TaskState{queue.TaskDone, queue.TaskFailed, queue.TaskCancelled, queue.TaskSuperseded} {
		e.addFinished(t, "old-"+string(st), 3, st, 2*time.Hour)
		e.addFinished(t, "new-"+string(st), 2, st, 30*time.Minute)
	}
	e.addDistinct(t, "pending", 2)
	sm := queue.NewSyncManager(e.d, queue.WithRetention(time.Hour),
		queue.WithStateRetention(queue.TaskFailed, queue.RetainForever),
		queue.WithStateRetention(queue.TaskCancelled, 3*time.Hour))
	n, err := queue.DeleteFinishedPass(e.ctx, sm)
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Errorf("deleted %d tasks, want 6 (the old DONE and SUPERSEDED ones)", n)
	}
	for name, want := range map[string]int{
		"old-DONE": 0, "old-SUPERSEDED": 0, "old-FAILED": 3, "old-CANCELLED": 3,
		"new-DONE": 2, "new-SUPERSEDED": 2, "new-FAILED": 2, "new-CANCELLED": 2, "pending": 2,
	} {
		got := 0
		for _, c := range e.counts(t, name) {
			got += c
		}
		if got != want {
			t.Errorf("%s: %d tasks left, want %d", name, got, want)
		}
	}
}

// TestRetentionDeletesUntilShortBatch: one pass deletes a backlog of more
// than two batches, batch after batch until one comes back short; with no
// time budget left it stops after one batch.
func TestRetentionDeletesUntilShortBatch(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	backlog := 2*queue.RetentionBatch + 7
	e.addFinished(t, "done", backlog, queue.TaskDone, 48*time.Hour)
	hurried := queue.NewSyncManager(e.d, queue.WithMaintenanceInterval(time.Nanosecond))
	n, err := queue.DeleteFinishedPass(e.ctx, hurried)
	if err != nil {
		t.Fatal(err)
	}
	if n != queue.RetentionBatch {
		t.Fatalf("a pass with no time budget deleted %d tasks, want one batch (%d)", n, queue.RetentionBatch)
	}
	sm := queue.NewSyncManager(e.d, queue.WithMaintenanceInterval(time.Hour))
	n, err = queue.DeleteFinishedPass(e.ctx, sm)
	if err != nil {
		t.Fatal(err)
	}
	if want := backlog - queue.RetentionBatch; n != want {
		t.Fatalf("one pass deleted %d tasks, want the remaining %d", n, want)
	}
	if left := e.counts(t, "done")[queue.TaskDone]; left != 0 {
		t.Fatalf("%d finished tasks left", left)
	}
}

// TestRetentionRunsInMaintenance: a running manager's maintenance deletes
// finished tasks past retention.
func TestRetentionRunsInMaintenance(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	e.addFinished(t, "done", 10, queue.TaskDone, 48*time.Hour)
	sm := queue.NewSyncManager(e.d, queue.WithMaintenanceInterval(50*time.Millisecond))
	smStart(t, sm)
	smEventually(t, 30*time.Second, "old finished tasks to be deleted", func() bool { return e.counts(t, "done")[queue.TaskDone] == 0 })
}

// TestRetentionIndexUsed: the delete finds old rows of a state through the
// partial index on final states, not by reading the table.
func TestRetentionIndexUsed(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	e.addFinished(t, "done", 2000, queue.TaskDone, 48*time.Hour)
	e.addDistinct(t, "pending", 2000)
	if _, err := e.db.ExecContext(e.ctx, `ANALYZE message_queue`); err != nil {
		t.Fatal(err)
	}
	rows, err := e.db.QueryContext(e.ctx, fmt.Sprintf(`EXPLAIN SELECT id FROM message_queue
		WHERE state = 'DONE' AND finished_at < now() - interval '1 day' LIMIT %d`, queue.RetentionBatch))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	plan := ""
	for rows.Next() {
		var line string
		rows.Scan(&line)
		plan += line + "\n"
	}
	if !strings.Contains(plan, "message_queue_finished_state_idx") {
		t.Fatalf("the retention query does not use the index on final states:\n%s", plan)
	}
}
