package queue_test

import (
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/esync/queue"
)

// The claim's cost does not depend on the shape of the backlog around the
// due tasks: for each shape, a claim of 100 of 300 due tasks reads about as
// many index entries as on a queue holding only those 300. Entries, not
// time: the count is the same on a quiet machine and a busy one.
func TestClaimCostDoesNotDependOnBacklogShape(t *testing.T) {
	t.Parallel()
	const due, limit = 300, 100
	addDue := func(t *testing.T, b *testBundle) {
		t.Helper()
		specs := make([]queue.TaskSpec, due)
		for i := range specs {
			specs[i] = queue.TaskSpec{Name: "job", Key: fmt.Sprintf("due%d", i)}
		}
		if _, err := b.tm.AddMany(b.ctx, specs); err != nil {
			t.Fatal(err)
		}
	}
	cost := func(t *testing.T, b *testBundle) int {
		t.Helper()
		if _, err := b.db.ExecContext(b.ctx, `VACUUM ANALYZE `+b.table); err != nil {
			t.Fatal(err)
		}
		return claimIndexReads(t, b, limit, nil)
	}
	base := setup(t)
	addDue(t, base)
	baseCost := cost(t, base)

	shapes := []struct {
		name  string
		build func(t *testing.T, b *testBundle)
	}{
		{"a: 20,000 tasks due in an hour", func(t *testing.T, b *testBundle) {
			addMany(t, b, 20_000, func(i int) queue.TaskSpec {
				return queue.TaskSpec{Name: "job", Key: fmt.Sprintf("later%d", i), Options: []queue.AddOption{queue.WithDelay(time.Hour)}}
			})
		}},
		{"b: 5,000 tasks piled on one key whose task runs", func(t *testing.T, b *testBundle) {
			b.add(t, "job", "hot", nil)
			b.claimLease(t, 1, time.Hour)
			for range 50 {
				addMany(t, b, 100, func(i int) queue.TaskSpec { return queue.TaskSpec{Name: "job", Key: "hot"} })
			}
		}},
		{"c: 100 keys with a running task and 50 pending each", func(t *testing.T, b *testBundle) {
			addMany(t, b, 100, func(i int) queue.TaskSpec { return queue.TaskSpec{Name: "job", Key: fmt.Sprintf("busy%d", i)} })
			b.claimLease(t, 100, time.Hour)
			for range 50 {
				addMany(t, b, 100, func(i int) queue.TaskSpec { return queue.TaskSpec{Name: "job", Key: fmt.Sprintf("busy%d", i)} })
			}
		}},
		{"d: 20,000 finished tasks", func(t *testing.T, b *testBundle) {
			addMany(t, b, 20_000, func(i int) queue.TaskSpec { return queue.TaskSpec{Name: "job", Key: fmt.Sprintf("old%d", i)} })
			for {
				got := b.claim(t, 1000)
				if len(got) == 0 {
					break
				}
				finishAll(t, b, got)
			}
		}},
	}
	for _, s := range shapes {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			s.build(t, b)
			addDue(t, b)
			got := cost(t, b)
			t.Logf("index entries read by a claim of %d: %d beside the backlog, %d without", limit, got, baseCost)
			if got > baseCost*3/2 {
				t.Errorf("a claim of %d read %d index entries beside the backlog, %d on a queue of the due tasks alone", limit, got, baseCost)
			}
		})
	}
}

// A transaction holding the xmin horizon keeps the index entries of claimed
// tasks from being removed; a claim that starts its walk where the due tasks
// begin does not read them.
func TestClaimWalkSkipsEntriesKeptByOldSnapshot(t *testing.T) {
	t.Parallel()
	b := setup(t)
	holder, err := b.db.BeginTx(b.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback()
	if _, err := holder.ExecContext(b.ctx, `SELECT txid_current()`); err != nil {
		t.Fatal(err)
	}
	addMany(t, b, 20_000, func(i int) queue.TaskSpec { return queue.TaskSpec{Name: "job", Key: fmt.Sprintf("old%d", i)} })
	for {
		got := b.claim(t, 1000)
		if len(got) == 0 {
			break
		}
		finishAll(t, b, got)
	}
	addMany(t, b, 300, func(i int) queue.TaskSpec { return queue.TaskSpec{Name: "job", Key: fmt.Sprintf("due%d", i)} })
	var first time.Time
	if err := b.db.QueryRowContext(b.ctx, `SELECT min(do_after) FROM `+b.table+` WHERE state = 'READY'`).Scan(&first); err != nil {
		t.Fatal(err)
	}
	fromStart := claimIndexReads(t, b, 100, nil)
	fromFirst := claimIndexReads(t, b, 100, first.Add(-time.Second))
	t.Logf("index entries read by a claim of 100: %d walking from the first due task, %d from the start", fromFirst, fromStart)
	if fromStart < 20_000 {
		t.Fatalf("test premise: a claim walking from the start read %d index entries, want the 20,000 left by claimed tasks", fromStart)
	}
	if fromFirst > 2000 {
		t.Errorf("a claim walking from the first due task read %d index entries (from the start: %d), want about as many as it claims", fromFirst, fromStart)
	}
}

// claimIndexReads runs one claim of limit tasks walking from from (a
// time.Time, or nil for the start of the queue), rolled back, and returns
// how many index entries of the queue table it read: the statistics count
// every entry an index scan returns, the dead ones whose rows it then finds
// invisible included.
func claimIndexReads(t *testing.T, b *testBundle, limit int, from any) int {
	t.Helper()
	// A new connection: a backend's counts of its own transactions add up
	// until they are flushed.
	db, err := sql.Open("postgres", b.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.BeginTx(b.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	fn := pq.QuoteIdentifier(b.driver.Schema()) + "." + pq.QuoteIdentifier(b.driver.Table()+"_claim")
	var n, reads int
	if err := tx.QueryRowContext(b.ctx, `SELECT count(*) FROM `+fn+`($1, $2, interval '1 minute', $3)`,
		pq.Array([]string{"job"}), limit, from).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != limit {
		t.Fatalf("claimed %d, want %d", n, limit)
	}
	if err := tx.QueryRowContext(b.ctx, `SELECT sum(pg_stat_get_xact_tuples_returned(indexrelid)) FROM pg_index WHERE indrelid = $1::regclass`,
		b.table).Scan(&reads); err != nil {
		t.Fatal(err)
	}
	return reads
}

// addMany adds n tasks made by spec in one call.
func addMany(t *testing.T, b *testBundle, n int, spec func(i int) queue.TaskSpec) {
	t.Helper()
	specs := make([]queue.TaskSpec, n)
	for i := range specs {
		specs[i] = spec(i)
	}
	if _, err := b.tm.AddMany(b.ctx, specs); err != nil {
		t.Fatal(err)
	}
}

// finishAll finishes the claimed tasks DONE in one call.
func finishAll(t *testing.T, b *testBundle, claimed []queue.ClaimedTask) {
	t.Helper()
	done := make([]queue.Completion, len(claimed))
	for i, c := range claimed {
		done[i] = queue.Completion{Lease: c.Lease, State: queue.TaskDone}
	}
	if _, err := b.driver.Finish(b.ctx, done); err != nil {
		t.Fatal(err)
	}
}
