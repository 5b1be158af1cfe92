package queue_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// The claims of an Exclusive stream are fenced by its lease: a holder
// whose lease another process took over claims nothing, though its own
// Check still passes, and learns it lost the lease; the new holder claims
// the tasks.
func TestExclusiveClaimFenced(t *testing.T) {
	t.Parallel()
	b := setup(t)
	checkFencedClaim(t, b, func() *queue.PostgresDriver {
		d, err := queue.OpenPostgres(b.dsn, queue.WithExclusiveLease(time.Hour))
		requireNoError(t, err)
		t.Cleanup(func() { d.Close() })
		return d
	})
}

// The same through PgBouncer in transaction mode and over TLS.
func TestNetExclusiveClaimFenced(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tg netTarget, s *queuetest.Server) {
		b := targetBundle(t, tg, s)
		checkFencedClaim(t, b, func() *queue.PostgresDriver {
			return openTarget(t, tg, b.dsn, queue.WithExclusiveLease(time.Hour))
		})
	})
}

// checkFencedClaim runs the fenced claim test on b's database with drivers
// from open, whose leases last long enough not to be renewed meanwhile.
func checkFencedClaim(t *testing.T, b *testBundle, open func() *queue.PostgresDriver) {
	t.Helper()
	a, other := open(), open()
	la, err := a.TryExclusive(b.ctx, "crm")
	if err != nil || la == nil {
		t.Fatalf("take: %v, %v", la, err)
	}
	claim := func(d *queue.PostgresDriver, l *queue.ExclusiveLock) ([]queue.ClaimedTask, error) {
		return d.Claim(b.ctx, queue.ClaimParams{Stream: "crm", Names: []string{"crm"}, Limit: 10, Lease: time.Minute, Exclusive: l})
	}

	// A lease that expired unrenewed, but that nobody took: the claim takes
	// nothing, and renews it, so that the next claim takes the tasks.
	for i := range 2 {
		b.add(t, "crm", fmt.Sprint("crm:early:", i), nil)
	}
	expireLease(t, b, "crm")
	got, err := claim(a, la)
	if err != nil || len(got) != 0 {
		t.Fatalf("claim under an expired lease: %v, %v; want nothing and no error", claimedIDs(got), err)
	}
	got, err = claim(a, la)
	if err != nil || len(got) != 2 {
		t.Fatalf("claim after the renewal: %v, %v; want the 2 due tasks", claimedIDs(got), err)
	}

	// Taken over: the lease ran out while its holder was paused, and
	// another process took it.
	var ids []int64
	for i := range 3 {
		ids = append(ids, b.add(t, "crm", fmt.Sprint("crm:", i), nil))
	}
	lb := takeOver(t, b, other, "crm")
	if err := la.Check(b.ctx); err != nil {
		t.Fatalf("the old holder's Check after the take-over: %v; it should not have noticed yet", err)
	}
	got, err = claim(a, la)
	if len(got) != 0 {
		t.Fatalf("the old holder claimed %v under a lease another process took over", claimedIDs(got))
	}
	if !errors.Is(err, queue.ErrExclusiveLost) {
		t.Fatalf("the old holder's claim: %v, want ErrExclusiveLost", err)
	}
	if err := la.Check(b.ctx); !errors.Is(err, queue.ErrExclusiveLost) {
		t.Fatalf("the old holder's Check after its fenced claim: %v, want ErrExclusiveLost", err)
	}
	b.requireState(t, queue.TaskReady, ids...)
	got, err = claim(other, lb)
	requireNoError(t, err)
	if fmt.Sprint(claimedIDs(got)) != fmt.Sprint(ids) {
		t.Fatalf("the new holder claimed %v, want %v", claimedIDs(got), ids)
	}
}

// exclusiveTable is the quoted name of b's exclusive lease table.
func exclusiveTable(b *testBundle) string {
	return pq.QuoteIdentifier(b.driver.Schema()) + "." + pq.QuoteIdentifier(b.driver.Table()+"_exclusive")
}

// expireLease makes the lease on name run out now, as if its holder had
// been paused past it.
func expireLease(t *testing.T, b *testBundle, name string) {
	t.Helper()
	_, err := b.db.ExecContext(b.ctx, `UPDATE `+exclusiveTable(b)+` SET expires_at = now() - interval '1 second' WHERE name = $1`, name)
	requireNoError(t, err)
}

// takeOver expires the lease on name and takes it with d, released when
// the test ends.
func takeOver(t *testing.T, b *testBundle, d *queue.PostgresDriver, name string) *queue.ExclusiveLock {
	t.Helper()
	expireLease(t, b, name)
	l, err := d.TryExclusive(b.ctx, name)
	if err != nil || l == nil {
		t.Fatalf("take-over of the expired lease: %v, %v", l, err)
	}
	t.Cleanup(func() { l.Release(context.Background()) })
	return l
}

// A SyncManager's Exclusive stream whose lease another process took over
// runs none of the tasks due from then on, reports the lost lease and
// stands by; it takes the stream back, and runs them, once the other
// process's lease runs out.
func TestExclusiveStreamFencedAfterTakeOver(t *testing.T) {
	t.Parallel()
	b := setup(t)
	d, err := queue.OpenPostgres(b.dsn, queue.WithExclusiveLease(time.Hour))
	requireNoError(t, err)
	t.Cleanup(func() { d.Close() })
	w := &claimWatcher{PostgresDriver: d}
	var ran atomic.Int64
	var log errorLog
	// Only NOTIFY wakes the idle stream: no poll comes between the steps.
	sm := queue.NewSyncManager(w, queue.WithPollInterval(time.Hour))
	sm.SetErrorHandler(log.handle)
	requireNoError(t, sm.ConfigureStream("crm", queue.Exclusive()))
	requireNoError(t, sm.RegisterTaskHandler(queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
		ran.Add(1)
		return queue.TaskResultSuccess, ""
	}), "crm"))
	smStart(t, sm)
	smEventually(t, 30*time.Second, "the stream's first, empty claim", w.idle)

	// In one transaction another process takes the stream over and adds
	// tasks: the manager's next claim (woken by their NOTIFY) finds them
	// due and a lease that still looks held from its side.
	tx, err := b.db.BeginTx(b.ctx, nil)
	requireNoError(t, err)
	defer tx.Rollback()
	_, err = tx.ExecContext(b.ctx, `UPDATE `+exclusiveTable(b)+` SET token = 'other', fence = fence + 1, held_by = 'other',
		acquired_at = now(), expires_at = now() + interval '1 hour' WHERE name = 'crm'`)
	requireNoError(t, err)
	for i := range 3 {
		requireNoError(t, b.tm.AddTaskTx(b.ctx, tx, "crm", fmt.Sprint("crm:", i), nil))
	}
	requireNoError(t, tx.Commit())
	smEventually(t, 30*time.Second, "the lost lease reported, or a run", func() bool {
		return log.find("exclusive lease lost") != nil || ran.Load() > 0
	})
	if n := ran.Load(); n != 0 {
		t.Fatalf("%d tasks ran under a lease another process took over", n)
	}
	if c := b.count(t, `SELECT count(*) FROM %s WHERE task_name = 'crm' AND state = 'READY'`); c != 3 {
		t.Fatalf("%d tasks READY after the fenced claim, want 3", c)
	}

	// The other process's lease runs out; a new task wakes the stream.
	expireLease(t, b, "crm")
	b.add(t, "crm", "crm:last", nil)
	smEventually(t, 30*time.Second, "the 4 tasks run after the stream was taken back", func() bool { return ran.Load() == 4 })
}
