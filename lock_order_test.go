package queue_test

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/esync/queue"
)

// A process extends the leases of tasks whose results it is writing: a
// Finish and an ExtendLeases of the same tasks, listed in opposite orders,
// run side by side without deadlocking.
func TestFinishBesideExtendDoesNotDeadlock(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for round := range 15 {
		addMany(t, b, 300, func(i int) queue.TaskSpec { return queue.TaskSpec{Name: "job", Key: fmt.Sprintf("r%d-%d", round, i)} })
		claimed := b.claim(t, 300)
		leases := make([]queue.Lease, len(claimed))
		done := make([]queue.Completion, len(claimed))
		for i, c := range claimed {
			leases[len(claimed)-1-i] = c.Lease
			done[i] = queue.Completion{Lease: c.Lease, State: queue.TaskDone}
		}
		stop := make(chan struct{})
		extended := make(chan error, 1)
		go func() {
			for {
				if _, err := b.driver.ExtendLeases(b.ctx, leases, time.Minute); err != nil {
					extended <- err
					return
				}
				select {
				case <-stop:
					extended <- nil
					return
				default:
				}
			}
		}()
		_, err := b.driver.Finish(b.ctx, done)
		close(stop)
		for _, e := range []error{err, <-extended} {
			var pqErr *pq.Error
			if errors.As(e, &pqErr) && pqErr.Code == "40P01" {
				t.Fatalf("round %d: %v", round, e)
			}
			requireNoError(t, e)
		}
		slices.Reverse(leases)
	}
}

// A Finish locks the rows it writes in id order, whatever the order of its
// results, so that two statements waiting for the same rows cannot
// deadlock (the others that lock several tasks skip rows they cannot
// lock). Here a
// transaction holds the lowest task's row while a Finish of all the tasks,
// listed highest first, waits; the transaction then locks the highest
// task's row. Had the Finish taken the rows in its input's order, it would
// hold that row by then, and one of the two would end in a deadlock.
func TestFinishLocksRowsInIdOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	addMany(t, b, 200, func(i int) queue.TaskSpec { return queue.TaskSpec{Name: "job", Key: fmt.Sprintf("k%d", i)} })
	claimed := b.claim(t, 200)
	if len(claimed) != 200 {
		t.Fatalf("claimed %d of 200", len(claimed))
	}
	slices.SortFunc(claimed, func(x, y queue.ClaimedTask) int { return cmp.Compare(y.ID, x.ID) }) // highest first
	done := make([]queue.Completion, len(claimed))
	for i, c := range claimed {
		done[i] = queue.Completion{Lease: c.Lease, State: queue.TaskDone}
	}
	lowest, highest := claimed[len(claimed)-1].ID, claimed[0].ID

	holder, err := b.db.BeginTx(b.ctx, nil)
	requireNoError(t, err)
	defer holder.Rollback()
	var pid int
	requireNoError(t, holder.QueryRowContext(b.ctx, `SELECT pg_backend_pid()`).Scan(&pid))
	_, err = holder.ExecContext(b.ctx, `SELECT 1 FROM `+b.table+` WHERE id = $1 FOR UPDATE`, lowest)
	requireNoError(t, err)

	finished := make(chan error, 1)
	go func() {
		lost, err := b.driver.Finish(b.ctx, done)
		if err == nil && len(lost) > 0 {
			err = fmt.Errorf("%d results not written", len(lost))
		}
		finished <- err
	}()
	// The Finish waits for the holder's row lock.
	deadline := time.Now().Add(20 * time.Second)
	for waiting := 0; waiting == 0; {
		requireNoError(t, b.db.QueryRowContext(b.ctx, `SELECT count(*) FROM pg_locks
			WHERE NOT granted AND locktype IN ('transactionid', 'tuple') AND pid <> $1
				AND pid IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database())`, pid).Scan(&waiting))
		if waiting == 0 && time.Now().After(deadline) {
			t.Fatal("the Finish never waited for the held row")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := holder.ExecContext(b.ctx, `SET LOCAL lock_timeout = '10s'`); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.ExecContext(b.ctx, `SELECT 1 FROM `+b.table+` WHERE id = $1 FOR UPDATE`, highest); err != nil {
		t.Fatalf("locking the highest task behind the waiting Finish: %v", err)
	}
	requireNoError(t, holder.Commit())
	if err := <-finished; err != nil {
		t.Fatalf("finish: %v", err)
	}
	if n := b.count(t, `SELECT count(*) FROM %s WHERE state = 'DONE'`); n != len(done) {
		t.Fatalf("%d of %d tasks DONE", n, len(done))
	}
}
