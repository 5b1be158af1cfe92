package queue_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/esync/queue"
)

// Invariant 1: one in flight per key.

func TestInvariantOneInFlightPerKey(t *testing.T) {
	t.Parallel()
	b := setup(t)

	x := b.add(t, "job", "K", map[string]any{"n": 1})
	claimed := b.claimOne(t)
	if claimed.ID != x {
		t.Fatalf("claimed %d, want %d", claimed.ID, x)
	}
	y := b.add(t, "job", "K", map[string]any{"n": 2})
	other := b.add(t, "job", "L", nil)

	// The only claimable task is L's: K has a task in flight.
	got := b.claim(t, 10)
	if len(got) != 1 || got[0].ID != other {
		t.Fatalf("claim with K in flight returned %v, want only [%d]", claimedIDs(got), other)
	}
	if got := b.claim(t, 10); len(got) != 0 {
		t.Fatalf("claim returned %v, want nothing", claimedIDs(got))
	}
	b.requireState(t, queue.TaskReady, y)
	if n := b.count(t, `SELECT count(*) FROM %s WHERE task_key = 'K' AND state = 'IN PROGRESS'`); n != 1 {
		t.Fatalf("%d tasks of K in progress, want 1", n)
	}

	// The database itself refuses a second task of K in progress.
	_, err := b.db.ExecContext(b.ctx, `UPDATE `+b.table+` SET state = 'IN PROGRESS' WHERE id = $1`, y)
	var pqErr *pq.Error
	if !errors.As(err, &pqErr) || pqErr.Code != "23505" {
		t.Fatalf("second IN PROGRESS row for K: error %v, want a unique violation (23505)", err)
	}

	// Once X finishes, Y is claimed.
	b.finish(t, claimed, queue.TaskDone, 0)
	if c := b.claimOne(t); c.ID != y {
		t.Fatalf("claimed %d after X finished, want %d", c.ID, y)
	}
}

// Invariant 2: never back in time.

func TestInvariantOlderRetrySupersededByNewerClaim(t *testing.T) {
	t.Parallel()
	b := setup(t)

	x := b.add(t, "job", "K", map[string]any{"v": "old"})
	b.finish(t, b.claimOne(t), queue.TaskRetry, 0) // X is RETRY and due
	b.requireState(t, queue.TaskRetry, x)
	y := b.add(t, "job", "K", map[string]any{"v": "new"})

	c := b.claimOne(t)
	if c.ID != y || c.Data["v"] != "new" {
		t.Fatalf("claimed %d %v, want %d with the new payload", c.ID, c.Data, y)
	}
	rx := b.row(t, x)
	if rx.State != string(queue.TaskSuperseded) || rx.SupersededBy.Int64 != y {
		t.Fatalf("older RETRY task: state %s superseded_by %v, want SUPERSEDED by %d", rx.State, rx.SupersededBy, y)
	}
	b.finish(t, c, queue.TaskDone, 0)
	if got := b.claim(t, 10); len(got) != 0 {
		t.Fatalf("claim after the newer task ran returned %v, want nothing", claimedIDs(got))
	}
}

func TestInvariantOlderDelayedRetryDoesNotRunAfterNewer(t *testing.T) {
	t.Parallel()
	b := setup(t)

	x := b.add(t, "job", "K", nil)
	b.finish(t, b.claimOne(t), queue.TaskRetry, time.Hour) // X waits an hour
	y := b.add(t, "job", "K", nil)
	b.finish(t, b.claimOne(t), queue.TaskDone, 0) // Y runs first

	// Make X due now: it must still never run, Y (newer) already ran.
	if _, err := b.db.ExecContext(b.ctx, `UPDATE `+b.table+` SET do_after = now() - interval '1 second' WHERE id = $1`, x); err != nil {
		t.Fatal(err)
	}
	if got := b.claim(t, 10); len(got) != 0 {
		t.Fatalf("claim returned %v: the older task ran after the newer one", claimedIDs(got))
	}
	rx := b.row(t, x)
	if rx.State != string(queue.TaskSuperseded) || rx.SupersededBy.Int64 != y {
		t.Fatalf("older task: state %s superseded_by %v, want SUPERSEDED by %d", rx.State, rx.SupersededBy, y)
	}
}

// An older task whose transaction commits after a newer task of its key has
// started must not run: it was created before the task that already ran.
func TestInvariantLateCommittedOlderTaskDoesNotRun(t *testing.T) {
	t.Parallel()
	b := setup(t)

	tx, err := b.db.BeginTx(b.ctx, nil)
	requireNoError(t, err)
	defer tx.Rollback()
	requireNoError(t, b.tm.AddTaskTx(b.ctx, tx, "job", "K", map[string]any{"v": "old"}))
	y := b.add(t, "job", "K", map[string]any{"v": "new"})

	c := b.claimOne(t)
	if c.ID != y {
		t.Fatalf("claimed %d, want %d", c.ID, y)
	}
	b.finish(t, c, queue.TaskDone, 0)
	requireNoError(t, tx.Commit())

	var x int64
	requireNoError(t, b.db.QueryRowContext(b.ctx, `SELECT id FROM `+b.table+` WHERE id <> $1`, y).Scan(&x))
	if x > y {
		t.Fatalf("test premise: the task added first has id %d > %d", x, y)
	}
	if got := b.claim(t, 10); len(got) != 0 {
		t.Fatalf("claim returned %v: task %d ran after the newer task %d of its key", claimedIDs(got), x, y)
	}
	rx := b.row(t, x)
	if rx.State != string(queue.TaskSuperseded) || rx.SupersededBy.Int64 != y {
		t.Fatalf("late older task: state %s superseded_by %v, want SUPERSEDED by %d", rx.State, rx.SupersededBy, y)
	}
}

func TestInvariantRetryRefusedWhenNewerStarted(t *testing.T) {
	t.Parallel()
	b := setup(t)

	x := b.add(t, "job", "K", nil)
	b.finish(t, b.claimOne(t), queue.TaskFailed, 0)
	y := b.add(t, "job", "K", nil)
	cy := b.claimOne(t)
	if cy.ID != y {
		t.Fatalf("claimed %d, want %d", cy.ID, y)
	}

	// Y has started (still running): X may not run again, now or later.
	requireErrorIs(t, b.tm.Retry(b.ctx, x), queue.ErrNotRetryable)
	b.finish(t, cy, queue.TaskDone, 0)
	requireErrorIs(t, b.tm.Retry(b.ctx, x), queue.ErrNotRetryable)
	b.requireState(t, queue.TaskFailed, x)
}

func TestInvariantRetryAllowedWhenNewerNotStarted(t *testing.T) {
	t.Parallel()
	b := setup(t)

	x := b.add(t, "job", "K", nil)
	b.finish(t, b.claimOne(t), queue.TaskFailed, 0)
	other := b.add(t, "job", "L", nil) // another key's newer task does not matter
	b.finish(t, b.claimOne(t), queue.TaskDone, 0)
	y := b.add(t, "job", "K", nil) // newer, not started

	requireNoError(t, b.tm.Retry(b.ctx, x))
	r := b.row(t, x)
	if r.State != string(queue.TaskReady) || r.Attempts != 0 || r.FinishedAt.Valid {
		t.Fatalf("retried task: state %s attempts %d finished %v, want READY, 0, none", r.State, r.Attempts, r.FinishedAt)
	}
	// Newest wins: Y runs and X is superseded by it.
	if c := b.claimOne(t); c.ID != y {
		t.Fatalf("claimed %d, want %d", c.ID, y)
	}
	if r := b.row(t, x); r.State != string(queue.TaskSuperseded) || r.SupersededBy.Int64 != y {
		t.Fatalf("retried older task: %s by %v, want SUPERSEDED by %d", r.State, r.SupersededBy, y)
	}
	b.requireState(t, queue.TaskDone, other)
}

// A newer task that ran, was retried (attempts back to 0) and then
// cancelled has still started: the older task may not be retried.
func TestInvariantRetryRefusedAfterNewerRetriedAndCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t)

	x := b.add(t, "job", "K", nil)
	b.finish(t, b.claimOne(t), queue.TaskFailed, 0)
	y := b.add(t, "job", "K", nil)
	b.finish(t, b.claimOne(t), queue.TaskFailed, 0)
	requireNoError(t, b.tm.Retry(b.ctx, y))
	requireNoError(t, b.tm.Cancel(b.ctx, y))

	requireErrorIs(t, b.tm.Retry(b.ctx, x), queue.ErrNotRetryable)
	b.requireState(t, queue.TaskFailed, x)
}

// Invariant 3: newest wins, and the oldest pending task holds the key's place.

func TestInvariantNewestWins(t *testing.T) {
	t.Parallel()
	b := setup(t)

	var ids []int64
	for i := range 5 {
		ids = append(ids, b.add(t, "job", "K", map[string]any{"n": i}))
	}
	got := b.claim(t, 10)
	if len(got) != 1 {
		t.Fatalf("claimed %v, want one task", claimedIDs(got))
	}
	winner := ids[len(ids)-1]
	if got[0].ID != winner || got[0].Data["n"] != float64(4) {
		t.Fatalf("claimed %d %v, want %d with n=4", got[0].ID, got[0].Data, winner)
	}
	for _, id := range ids[:4] {
		if end := b.supersededChainEnd(t, id); end != winner {
			t.Fatalf("task %d: its chain of supersession ends at %d, want the winner %d", id, end, winner)
		}
	}
}

// supersededChainEnd follows the chain of supersession from task id, checking
// that each task on it is SUPERSEDED, finished and never ran, and that it
// names a newer task of its key; it returns the task the chain ends at.
func (b *testBundle) supersededChainEnd(t *testing.T, id int64) int64 {
	t.Helper()
	r := b.row(t, id)
	for r.State == string(queue.TaskSuperseded) {
		if !r.SupersededBy.Valid || r.SupersededBy.Int64 <= r.ID || !r.FinishedAt.Valid || r.Attempts != 0 {
			t.Fatalf("task %d: state %s superseded_by %v finished %v attempts %d, want SUPERSEDED by a newer task, finished, never run",
				r.ID, r.State, r.SupersededBy, r.FinishedAt.Valid, r.Attempts)
		}
		next := b.row(t, r.SupersededBy.Int64)
		if next.Key != r.Key {
			t.Fatalf("task %d of key %q is superseded by task %d of key %q", r.ID, r.Key, next.ID, next.Key)
		}
		r = next
	}
	return r.ID
}

func TestInvariantHotKeyKeepsItsPlace(t *testing.T) {
	t.Parallel()
	b := setup(t)

	b.add(t, "job", "A", nil)
	bID := b.add(t, "job", "B", nil)
	cID := b.add(t, "job", "C", nil)
	var lastA int64
	for i := range 20 {
		lastA = b.add(t, "job", "A", map[string]any{"n": i})
	}

	first := b.claimOne(t)
	if first.Key != "A" || first.ID != lastA {
		t.Fatalf("first claim: key %s id %d, want A's newest task %d", first.Key, first.ID, lastA)
	}
	b.finish(t, first, queue.TaskDone, 0)

	// A is re-added again: it now queues behind B and C.
	a2 := b.add(t, "job", "A", nil)
	var order []int64
	for range 3 {
		c := b.claimOne(t)
		order = append(order, c.ID)
		b.finish(t, c, queue.TaskDone, 0)
	}
	if want := []int64{bID, cID, a2}; fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("claim order %v, want %v", order, want)
	}
}

// Invariant 4: completion touches only itself.

func TestInvariantCompletionTouchesOnlyItself(t *testing.T) {
	for _, outcome := range []queue.TaskState{queue.TaskDone, queue.TaskRetry, queue.TaskFailed} {
		t.Run(string(outcome), func(t *testing.T) {
			t.Parallel()
			b := setup(t)

			x := b.add(t, "job", "K", map[string]any{"v": 1})
			cx := b.claimOne(t)
			y := b.add(t, "job", "K", map[string]any{"v": 2}) // added while X runs
			before := b.row(t, y)

			b.finish(t, cx, outcome, 0)
			if got := b.row(t, x).State; got != string(outcome) {
				t.Fatalf("X: state %s, want %s", got, outcome)
			}
			after := b.row(t, y)
			if after.State != string(queue.TaskReady) || fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("finishing X changed Y:\nbefore %+v\nafter  %+v", before, after)
			}
			c := b.claimOne(t)
			if c.ID != y || c.Data["v"] != float64(2) {
				t.Fatalf("next claim %d %v, want %d", c.ID, c.Data, y)
			}
			// Y is the newer task: a RETRY of X is superseded, not run.
			if outcome == queue.TaskRetry {
				if r := b.row(t, x); r.State != string(queue.TaskSuperseded) || r.SupersededBy.Int64 != y {
					t.Fatalf("X: %s by %v, want SUPERSEDED by %d", r.State, r.SupersededBy, y)
				}
			}
		})
	}
}

// Invariant 5: nothing lost, and fencing by lease token.

func TestInvariantExpiredLeaseRescuedAndStaleFinishFenced(t *testing.T) {
	t.Parallel()
	b := setup(t)

	id := b.add(t, "job", "K", nil)
	stale := b.claimLease(t, 1, time.Second)
	if len(stale) != 1 {
		t.Fatalf("claimed %v, want one", claimedIDs(stale))
	}
	eventually(t, 20*time.Second, "the lease to be rescued", func() bool {
		n, err := b.driver.RescueExpired(b.ctx, queue.RescueParams{Limit: 10})
		requireNoError(t, err)
		return n == 1
	})
	r := b.row(t, id)
	if r.State != string(queue.TaskRetry) || r.LeaseToken.Valid || r.LeaseExpires.Valid {
		t.Fatalf("rescued task: state %s token %v expires %v, want RETRY without a lease", r.State, r.LeaseToken, r.LeaseExpires)
	}

	fresh := b.claimOne(t)
	if fresh.ID != id || fresh.Attempt != 2 || fresh.Lease.Token == stale[0].Lease.Token {
		t.Fatalf("second claim: id %d attempt %d token %s, want %d, 2, a new token", fresh.ID, fresh.Attempt, fresh.Lease.Token, id)
	}

	// The stale worker comes back: its result and its extension are refused.
	before := b.row(t, id)
	lost, err := b.driver.Finish(b.ctx, []queue.Completion{{Lease: stale[0].Lease, State: queue.TaskDone, Message: "stale"}})
	requireNoError(t, err)
	if fmt.Sprint(lost) != fmt.Sprint([]int64{id}) {
		t.Fatalf("stale finish: lost %v, want [%d]", lost, id)
	}
	lost, err = b.driver.ExtendLeases(b.ctx, []queue.Lease{stale[0].Lease}, time.Minute)
	requireNoError(t, err)
	if fmt.Sprint(lost) != fmt.Sprint([]int64{id}) {
		t.Fatalf("stale extend: lost %v, want [%d]", lost, id)
	}
	if after := b.row(t, id); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("stale worker changed the task:\nbefore %+v\nafter  %+v", before, after)
	}

	// The new owner finishes normally.
	b.finish(t, fresh, queue.TaskDone, 0)
	if r := b.row(t, id); r.State != string(queue.TaskDone) || r.Message != "test" {
		t.Fatalf("task: %s %q, want DONE by the new owner", r.State, r.Message)
	}
}

func TestInvariantExtendLeasesKeepsLeaseAlive(t *testing.T) {
	t.Parallel()
	b := setup(t)

	id := b.add(t, "job", "K", nil)
	gone := b.add(t, "job", "L", nil)
	claimed := b.claimLease(t, 10, time.Second)
	if len(claimed) != 2 {
		t.Fatalf("claimed %v, want 2", claimedIDs(claimed))
	}
	var held, lostLease queue.Lease
	for _, c := range claimed {
		if c.ID == id {
			held = c.Lease
		} else {
			lostLease = c.Lease
		}
	}
	// L's lease is taken away (cancelled by an operator, say).
	if _, err := b.db.ExecContext(b.ctx, `UPDATE `+b.table+` SET lease_token = gen_random_uuid() WHERE id = $1`, gone); err != nil {
		t.Fatal(err)
	}

	// Keep extending K's lease until well past its first expiry; it must
	// never be rescued.
	firstExpiry := held.Expires
	for time.Now().Before(firstExpiry.Add(2 * time.Second)) {
		lost, err := b.driver.ExtendLeases(b.ctx, []queue.Lease{held, lostLease}, 3*time.Second)
		requireNoError(t, err)
		if fmt.Sprint(lost) != fmt.Sprint([]int64{gone}) {
			t.Fatalf("extend: lost %v, want [%d]", lost, gone)
		}
		if _, err := b.driver.RescueExpired(b.ctx, queue.RescueParams{Limit: 10}); err != nil {
			t.Fatal(err)
		}
		if s := b.state(t, id); s != string(queue.TaskInProgress) {
			t.Fatalf("extended task is %s, want IN PROGRESS", s)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var expiresAfterFirst bool
	requireNoError(t, b.db.QueryRowContext(b.ctx, `SELECT lease_expires_at > $2 FROM `+b.table+` WHERE id = $1`, id, firstExpiry).Scan(&expiresAfterFirst))
	if !expiresAfterFirst {
		t.Fatal("lease expiry was not pushed past the first expiry")
	}

	// Without extensions the lease runs out and the task is rescued.
	eventually(t, 20*time.Second, "the unextended lease to be rescued", func() bool {
		_, err := b.driver.RescueExpired(b.ctx, queue.RescueParams{Limit: 10})
		requireNoError(t, err)
		return b.state(t, id) == string(queue.TaskRetry)
	})
	lost, err := b.driver.ExtendLeases(b.ctx, []queue.Lease{held}, time.Minute)
	requireNoError(t, err)
	if fmt.Sprint(lost) != fmt.Sprint([]int64{id}) {
		t.Fatalf("extend after rescue: lost %v, want [%d]", lost, id)
	}
}

func TestInvariantRescueFailsTaskOutOfAttempts(t *testing.T) {
	t.Parallel()
	b := setup(t)

	id := b.add(t, "job", "K", nil, queue.WithMaxAttempts(1))
	if got := b.claimLease(t, 1, time.Second); len(got) != 1 {
		t.Fatalf("claimed %v, want one", claimedIDs(got))
	}
	eventually(t, 20*time.Second, "the lease to be rescued", func() bool {
		n, err := b.driver.RescueExpired(b.ctx, queue.RescueParams{Limit: 10})
		requireNoError(t, err)
		return n == 1
	})
	r := b.row(t, id)
	if r.State != string(queue.TaskFailed) || !r.FinishedAt.Valid || r.LeaseToken.Valid {
		t.Fatalf("task out of attempts: state %s finished %v token %v, want FAILED, finished, no lease", r.State, r.FinishedAt.Valid, r.LeaseToken)
	}
	if got := b.claim(t, 10); len(got) != 0 {
		t.Fatalf("claim returned %v, want nothing", claimedIDs(got))
	}
}

func TestInvariantRetryPastMaxAttemptsFails(t *testing.T) {
	t.Parallel()
	b := setup(t)

	id := b.add(t, "job", "K", nil, queue.WithMaxAttempts(3))
	for attempt := 1; attempt <= 3; attempt++ {
		c := b.claimOne(t)
		if c.ID != id || c.Attempt != attempt {
			t.Fatalf("claim: id %d attempt %d, want %d attempt %d", c.ID, c.Attempt, id, attempt)
		}
		b.finish(t, c, queue.TaskRetry, 0)
		want := queue.TaskRetry
		if attempt == 3 {
			want = queue.TaskFailed
		}
		if r := b.row(t, id); r.State != string(want) || r.FinishedAt.Valid != (attempt == 3) {
			t.Fatalf("after attempt %d: state %s finished %v, want %s", attempt, r.State, r.FinishedAt.Valid, want)
		}
	}
	if got := b.claim(t, 10); len(got) != 0 {
		t.Fatalf("claim returned %v, want nothing", claimedIDs(got))
	}
}

func TestInvariantRetryDelayRespected(t *testing.T) {
	t.Parallel()
	b := setup(t)

	id := b.add(t, "job", "K", nil)
	b.finish(t, b.claimOne(t), queue.TaskRetry, time.Hour)
	if got := b.claim(t, 10); len(got) != 0 {
		t.Fatalf("claim returned %v while the retry is an hour away", claimedIDs(got))
	}
	if n := b.count(t, `SELECT count(*) FROM %s WHERE id = $1 AND do_after > now() + interval '59 minutes'`, id); n != 1 {
		t.Fatal("retry is not due an hour from now")
	}

	// A short delay: not claimable at once, claimable once due.
	other := b.add(t, "job", "L", nil)
	b.finish(t, b.claimOne(t), queue.TaskRetry, 3*time.Second)
	if got := b.claim(t, 10); len(got) != 0 {
		t.Fatalf("claim returned %v right after a 3s retry", claimedIDs(got))
	}
	var got []queue.ClaimedTask
	eventually(t, 20*time.Second, "the 3s retry to become due", func() bool {
		got = b.claim(t, 10)
		return len(got) > 0
	})
	if len(got) != 1 || got[0].ID != other || got[0].Attempt != 2 {
		t.Fatalf("claimed %v, want [%d] on attempt 2", claimedIDs(got), other)
	}
}

// Invariant 6: transactional enqueue.

func TestInvariantAddTaskTxRollbackLeavesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)

	tx, err := b.db.BeginTx(b.ctx, nil)
	requireNoError(t, err)
	requireNoError(t, b.tm.AddTaskTx(b.ctx, tx, "job", "K", map[string]any{"a": 1}))
	_, err = b.tm.AddManyTx(b.ctx, tx, []queue.TaskSpec{{Name: "job", Key: "L"}, {Name: "job", Key: "M"}})
	requireNoError(t, err)
	// Not visible outside the transaction before commit.
	if n := b.count(t, `SELECT count(*) FROM %s`); n != 0 {
		t.Fatalf("%d rows visible before commit", n)
	}
	requireNoError(t, tx.Rollback())
	if n := b.count(t, `SELECT count(*) FROM %s`); n != 0 {
		t.Fatalf("%d rows after rollback, want 0", n)
	}
	if got := b.claim(t, 10); len(got) != 0 {
		t.Fatalf("claimed %v after rollback", claimedIDs(got))
	}

	tx, err = b.db.BeginTx(b.ctx, nil)
	requireNoError(t, err)
	requireNoError(t, b.tm.AddTaskTx(b.ctx, tx, "job", "K", map[string]any{"a": 2}))
	requireNoError(t, tx.Commit())
	if n := b.count(t, `SELECT count(*) FROM %s WHERE task_key = 'K' AND state = 'READY' AND data = '{"a": 2}'`); n != 1 {
		t.Fatalf("%d committed rows, want 1", n)
	}
	if c := b.claimOne(t); c.Key != "K" {
		t.Fatalf("claimed key %s, want K", c.Key)
	}
	if err := b.tm.AddTaskTx(b.ctx, nil, "job", "N", nil); err == nil {
		t.Fatal("AddTaskTx without a transaction: no error")
	}
	if n := b.count(t, `SELECT count(*) FROM %s WHERE task_key = 'N'`); n != 0 {
		t.Fatalf("AddTaskTx without a transaction wrote %d rows", n)
	}
}

func TestInvariantNotifyAtCommitOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l := listen(t, b)

	tx, err := b.db.BeginTx(b.ctx, nil)
	requireNoError(t, err)
	requireNoError(t, b.tm.AddTaskTx(b.ctx, tx, "send-email", "K", nil))
	requireNoNotification(t, l, 500*time.Millisecond)
	requireNoError(t, tx.Commit())
	if n := nextNotification(t, l, 10*time.Second); n.Extra != "send-email" || n.Channel != b.driver.Channel() {
		t.Fatalf("notification %q on %q, want send-email on %q", n.Extra, n.Channel, b.driver.Channel())
	}

	// A rolled-back transaction announces nothing.
	tx, err = b.db.BeginTx(b.ctx, nil)
	requireNoError(t, err)
	requireNoError(t, b.tm.AddTaskTx(b.ctx, tx, "rolled-back", "K", nil))
	requireNoError(t, tx.Rollback())
	requireNoNotification(t, l, 500*time.Millisecond)

	// Outside a transaction the insert announces itself at once.
	b.add(t, "sync-crm", "K", nil)
	if n := nextNotification(t, l, 10*time.Second); n.Extra != "sync-crm" {
		t.Fatalf("notification %q, want sync-crm", n.Extra)
	}
}

func TestInvariantWithNotifyFalseSendsNone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	quiet, err := queue.NewPostgresDriverFromDB(b.db, queue.WithNotify(false))
	requireNoError(t, err)
	if quiet.Channel() != b.driver.Channel() {
		t.Fatalf("channel %q, want %q", quiet.Channel(), b.driver.Channel())
	}
	l := listen(t, b)

	if _, err := queue.NewTaskManager(quiet).Add(b.ctx, "job", "K", nil); err != nil {
		t.Fatal(err)
	}
	requireNoNotification(t, l, time.Second)
	if n := b.count(t, `SELECT count(*) FROM %s`); n != 1 {
		t.Fatalf("%d rows, want 1", n)
	}
	// The same listener does hear a driver with notifications on.
	b.add(t, "job", "K", nil)
	if n := nextNotification(t, l, 10*time.Second); n.Extra != "job" {
		t.Fatalf("notification %q, want job", n.Extra)
	}
}

// listen opens a LISTEN connection on the driver's channel.
func listen(t *testing.T, b *testBundle) *pq.Listener {
	t.Helper()
	l := pq.NewListener(b.dsn, 10*time.Millisecond, time.Second, nil)
	t.Cleanup(func() { l.Close() })
	requireNoError(t, l.Listen(b.driver.Channel()))
	return l
}

func nextNotification(t *testing.T, l *pq.Listener, timeout time.Duration) *pq.Notification {
	t.Helper()
	select {
	case n := <-l.Notify:
		if n == nil {
			t.Fatal("listener reconnected; notifications may be lost")
		}
		return n
	case <-time.After(timeout):
		t.Fatalf("no notification within %s", timeout)
	}
	return nil
}

func requireNoNotification(t *testing.T, l *pq.Listener, wait time.Duration) {
	t.Helper()
	select {
	case n := <-l.Notify:
		t.Fatalf("unexpected notification %+v", n)
	case <-time.After(wait):
	}
}

// Invariants 1 to 5 under concurrency: claimers and producers at once.

func TestInvariantsUnderConcurrency(t *testing.T) {
	t.Parallel()
	checkInvariantsUnderConcurrency(t, setup(t), concurrencyLoad{claimers: 8, producers: 2, perProd: 5000, keys: 50})
}

// concurrencyLoad sizes checkInvariantsUnderConcurrency.
type concurrencyLoad struct {
	claimers, producers int
	perProd             int // tasks each producer adds
	keys                int
}

// checkInvariantsUnderConcurrency runs claimers and producers at once on b
// and checks invariants 1 to 5 while they run and after.
func checkInvariantsUnderConcurrency(t *testing.T, b *testBundle, load concurrencyLoad) {
	var (
		claimers  = load.claimers
		producers = load.producers
		perProd   = load.perProd
		keys      = load.keys
	)
	const retryRate = 0.1
	keyName := func(i int) string { return fmt.Sprintf("key-%02d", i) }

	var (
		mu          sync.Mutex
		inFlight    = map[string]int64{}   // key -> task running now
		lastStarted = map[string]int64{}   // key -> last task started
		lastResult  = map[string]bool{}    // key -> last run asked for a retry
		started     = map[string][]int64{} // key -> tasks started, in order
		added       = map[int64]string{}   // task -> key, as added
		failures    []string
		producing   atomic.Int32
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}

	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup

	producing.Store(int32(producers))
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer producing.Add(-1)
			rng := rand.New(rand.NewPCG(uint64(p), 42))
			record := func(ids []int64, specs []queue.TaskSpec) {
				mu.Lock()
				defer mu.Unlock()
				for i, id := range ids {
					added[id] = specs[i].Key
				}
			}
			for n := 0; n < perProd; {
				switch op := rng.IntN(10); {
				case op < 4: // a single Add
					spec := queue.TaskSpec{Name: "job", Key: keyName(rng.IntN(keys)), Data: map[string]any{"p": p, "n": n}}
					id, err := b.tm.Add(ctx, spec.Name, spec.Key, spec.Data)
					if err != nil {
						fail("producer %d: add: %v", p, err)
						return
					}
					record([]int64{id}, []queue.TaskSpec{spec})
					n++
				case op < 8: // a chunk with AddMany
					chunk := min(10+rng.IntN(70), perProd-n)
					specs := make([]queue.TaskSpec, chunk)
					for i := range specs {
						specs[i] = queue.TaskSpec{Name: "job", Key: keyName(rng.IntN(keys)), Data: map[string]any{"p": p, "n": n + i}}
					}
					ids, err := b.tm.AddMany(ctx, specs)
					if err != nil {
						fail("producer %d: add many: %v", p, err)
						return
					}
					record(ids, specs)
					n += chunk
				default: // a few tasks in a transaction that commits a little later
					chunk := min(1+rng.IntN(5), perProd-n)
					specs := make([]queue.TaskSpec, chunk)
					for i := range specs {
						specs[i] = queue.TaskSpec{Name: "job", Key: keyName(rng.IntN(keys)), Data: map[string]any{"p": p, "n": n + i, "tx": true}}
					}
					tx, err := b.db.BeginTx(ctx, nil)
					if err != nil {
						fail("producer %d: begin: %v", p, err)
						return
					}
					ids, err := b.tm.AddManyTx(ctx, tx, specs)
					if err != nil {
						tx.Rollback()
						fail("producer %d: add many in tx: %v", p, err)
						return
					}
					time.Sleep(time.Duration(1+rng.IntN(5)) * time.Millisecond)
					if err := tx.Commit(); err != nil {
						fail("producer %d: commit: %v", p, err)
						return
					}
					record(ids, specs)
					n += chunk
				}
				time.Sleep(time.Duration(rng.IntN(2)) * time.Millisecond)
			}
		}()
	}

	// A watcher checks the database's own view while everything runs.
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for ctx.Err() == nil && (producing.Load() > 0 || pendingOrRunning(ctx, b) > 0) {
			var key string
			err := b.db.QueryRowContext(ctx, `SELECT task_key FROM `+b.table+
				` WHERE state = 'IN PROGRESS' GROUP BY task_key HAVING count(*) > 1 LIMIT 1`).Scan(&key)
			if err == nil {
				fail("database shows two tasks of %s in progress", key)
			} else if !errors.Is(err, sql.ErrNoRows) && ctx.Err() == nil {
				fail("watcher: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	for w := range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			idle := 0
			for ctx.Err() == nil {
				got, err := b.driver.Claim(ctx, queue.ClaimParams{Names: []string{"job"}, Limit: 20, Lease: 30 * time.Second})
				if err != nil {
					fail("claimer %d: claim: %v", w, err)
					return
				}
				if len(got) == 0 {
					if producing.Load() == 0 && pendingOrRunning(ctx, b) == 0 {
						idle++
						if idle > 3 {
							return
						}
					}
					time.Sleep(time.Duration(1+rng.IntN(5)) * time.Millisecond)
					continue
				}
				idle = 0
				seen := map[string]bool{}
				mu.Lock()
				for _, c := range got {
					if seen[c.Key] {
						failures = append(failures, fmt.Sprintf("one claim returned two tasks of %s", c.Key))
					}
					seen[c.Key] = true
					if other, busy := inFlight[c.Key]; busy {
						failures = append(failures, fmt.Sprintf("task %d of %s started while %d is in flight", c.ID, c.Key, other))
					}
					last := lastStarted[c.Key]
					if c.ID < last || (c.ID == last && !lastResult[c.Key]) {
						failures = append(failures, fmt.Sprintf("key %s went back in time: task %d started after %d", c.Key, c.ID, last))
					}
					inFlight[c.Key] = c.ID
					lastStarted[c.Key] = c.ID
					started[c.Key] = append(started[c.Key], c.ID)
				}
				mu.Unlock()

				// The work: a short pause, as a real action would take.
				time.Sleep(time.Duration(rng.IntN(1500)) * time.Microsecond)

				completions := make([]queue.Completion, len(got))
				mu.Lock()
				for i, c := range got {
					state := queue.TaskDone
					if rng.Float64() < retryRate {
						state = queue.TaskRetry
					}
					completions[i] = queue.Completion{Lease: c.Lease, State: state}
					// Leave the in-flight set before the database does, so a
					// claim that follows the finish never sees a stale entry.
					if inFlight[c.Key] != c.ID {
						failures = append(failures, fmt.Sprintf("in-flight entry of %s is %d, want %d", c.Key, inFlight[c.Key], c.ID))
					}
					delete(inFlight, c.Key)
					lastResult[c.Key] = state == queue.TaskRetry
				}
				mu.Unlock()
				lost, err := b.driver.Finish(ctx, completions)
				if err != nil {
					fail("claimer %d: finish: %v", w, err)
					return
				}
				if len(lost) > 0 {
					fail("claimer %d: leases lost: %v", w, lost)
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	<-watchDone

	if len(failures) > 0 {
		t.Fatalf("%d failures, first ones:\n%s", len(failures), joinLines(failures))
	}
	if err := ctx.Err(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("test ran out of time: %v", err)
	}

	// Nothing lost: every task added is in the table, DONE or SUPERSEDED.
	all := b.rows(t)
	if len(added) != producers*perProd || len(all) != len(added) {
		t.Fatalf("added %d tasks (want %d), table has %d", len(added), producers*perProd, len(all))
	}
	byID := make(map[int64]row, len(all))
	newest := map[string]int64{}
	states := map[string]int{}
	for _, r := range all {
		byID[r.ID] = r
		states[r.State]++
		if added[r.ID] != r.Key {
			t.Fatalf("task %d: key %q, added as %q", r.ID, r.Key, added[r.ID])
		}
		newest[r.Key] = max(newest[r.Key], r.ID)
	}
	for _, r := range all {
		switch r.State {
		case string(queue.TaskDone):
		case string(queue.TaskSuperseded):
			// It points at a newer task of its key, and the chain of
			// supersession ends at a task that is DONE.
			cur := r
			for cur.State == string(queue.TaskSuperseded) {
				next, ok := byID[cur.SupersededBy.Int64]
				if !ok || next.Key != cur.Key || next.ID <= cur.ID {
					t.Fatalf("task %d (%s) superseded by %v: want a newer task of its key, got %+v", cur.ID, cur.Key, cur.SupersededBy, next)
				}
				cur = next
			}
			if cur.State != string(queue.TaskDone) {
				t.Fatalf("task %d is superseded by a chain ending at %d in state %s", r.ID, cur.ID, cur.State)
			}
		default:
			t.Fatalf("task %d (%s) ended %s, want DONE or SUPERSEDED", r.ID, r.Key, r.State)
		}
	}
	// Newest wins: the last task of each key ran and is DONE.
	if len(newest) != keys {
		t.Fatalf("%d keys used, want %d", len(newest), keys)
	}
	for key, id := range newest {
		if byID[id].State != string(queue.TaskDone) {
			t.Fatalf("newest task %d of %s is %s, want DONE", id, key, byID[id].State)
		}
		if s := started[key]; len(s) == 0 || s[len(s)-1] != id {
			t.Fatalf("the last task started for %s is not its newest task %d", key, id)
		}
	}
	// Every DONE task was started by a claimer, in increasing order per key.
	startedSet := map[int64]bool{}
	for key, ids := range started {
		if !sort.SliceIsSorted(ids, func(i, j int) bool { return ids[i] < ids[j] }) {
			t.Fatalf("key %s: started out of order: %v", key, ids)
		}
		for _, id := range ids {
			startedSet[id] = true
		}
	}
	for _, r := range all {
		if r.State == string(queue.TaskDone) && !startedSet[r.ID] {
			t.Fatalf("task %d is DONE but no claimer started it", r.ID)
		}
	}
	var runs int
	for _, ids := range started {
		runs += len(ids)
	}
	t.Logf("%d tasks: %v; %d runs", len(all), states, runs)
}

// pendingOrRunning counts tasks not yet final.
func pendingOrRunning(ctx context.Context, b *testBundle) int {
	var n int
	if err := b.db.QueryRowContext(ctx, `SELECT count(*) FROM `+b.table+
		` WHERE state IN ('READY', 'RETRY', 'IN PROGRESS')`).Scan(&n); err != nil {
		return -1
	}
	return n
}

func joinLines(lines []string) string {
	var s string
	for _, l := range lines {
		s += "  " + l + "\n"
	}
	return s
}
