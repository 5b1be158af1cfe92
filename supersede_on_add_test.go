package queue_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/esync/queue"
)

// A key updated while its task runs keeps one pending task: each new task
// supersedes the previous one as it is added, and the last one runs next.
func TestAddSupersedesPendingTaskOfKey(t *testing.T) {
	t.Parallel()
	b := setup(t)

	b.add(t, "job", "K", nil)
	running := b.claimOne(t)
	var ids []int64
	for i := range 20 {
		ids = append(ids, b.add(t, "job", "K", map[string]any{"n": i}))
	}
	n, err := b.tm.Count(b.ctx, queue.TaskFilter{Key: "K", States: []queue.TaskState{queue.TaskReady}})
	requireNoError(t, err)
	if n != 1 {
		t.Fatalf("%d pending tasks of K, want 1", n)
	}
	for i, id := range ids[:len(ids)-1] {
		if r := b.row(t, id); r.State != string(queue.TaskSuperseded) || r.SupersededBy.Int64 != ids[i+1] {
			t.Fatalf("task %d: %s by %v, want SUPERSEDED by %d", id, r.State, r.SupersededBy, ids[i+1])
		}
	}
	b.finish(t, running, queue.TaskDone, 0)
	if c := b.claimOne(t); c.ID != ids[len(ids)-1] {
		t.Fatalf("claimed %d, want the newest %d", c.ID, ids[len(ids)-1])
	}
}

// A task added with a delay leaves a task of its key that is due before it
// to run first; a task due now supersedes one due later.
func TestAddSupersedesOnlyTasksDueNoEarlier(t *testing.T) {
	t.Parallel()
	b := setup(t)

	due := b.add(t, "job", "K", nil)
	later := b.add(t, "job", "K", nil, queue.WithDelay(time.Hour))
	b.requireState(t, queue.TaskReady, due, later)
	if c := b.claimOne(t); c.ID != due {
		t.Fatalf("claimed %d, want %d (due now)", c.ID, due)
	}

	x := b.add(t, "job", "L", nil, queue.WithDelay(time.Hour))
	y := b.add(t, "job", "L", nil)
	if r := b.row(t, x); r.State != string(queue.TaskSuperseded) || r.SupersededBy.Int64 != y {
		t.Fatalf("task due later: %s by %v, want SUPERSEDED by %d", r.State, r.SupersededBy, y)
	}
}

// Tasks of one key in one AddMany: the last one is pending, the earlier ones
// are superseded by it, and it takes the place of the key's pending task.
func TestAddManySupersedesWithinTheCall(t *testing.T) {
	t.Parallel()
	b := setup(t)

	first := b.add(t, "job", "K", nil)
	other := b.add(t, "job", "M", nil)
	ids, err := b.tm.AddMany(b.ctx, []queue.TaskSpec{{Name: "job", Key: "K"}, {Name: "job", Key: "L"}, {Name: "job", Key: "K"}})
	requireNoError(t, err)
	b.requireState(t, queue.TaskSuperseded, first, ids[0])
	b.requireState(t, queue.TaskReady, ids[1], ids[2], other)
	if r := b.row(t, ids[0]); r.SupersededBy.Int64 != ids[2] {
		t.Fatalf("earlier task of the call superseded by %v, want %d", r.SupersededBy, ids[2])
	}
	if place, was := b.row(t, ids[2]).DoAfter, b.row(t, first).DoAfter; !place.Equal(was) {
		t.Fatalf("K's newest task is queued at %v, want the place of the task it superseded, %v", place, was)
	}
}

// A producer's open transaction that superseded a key's pending task holds
// that row: a claim skips the key without waiting, takes the other keys,
// and after the commit takes the new task; after a rollback, the old one.
func TestClaimSkipsKeyHeldByOpenAdd(t *testing.T) {
	t.Parallel()
	for _, commit := range []bool{true, false} {
		b := setup(t)
		old := b.add(t, "job", "K", nil)
		tx, err := b.db.BeginTx(b.ctx, nil)
		requireNoError(t, err)
		requireNoError(t, b.tm.AddTaskTx(b.ctx, tx, "job", "K", map[string]any{"v": "new"}))
		other := b.add(t, "job", "L", nil)

		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		got, err := b.driver.Claim(ctx, queue.ClaimParams{Names: []string{"job"}, Limit: 10, Lease: time.Minute})
		cancel()
		requireNoError(t, err)
		if len(got) != 1 || got[0].ID != other {
			t.Fatalf("claim while the add is open: %v, want only %d", claimedIDs(got), other)
		}
		want := old
		if commit {
			requireNoError(t, tx.Commit())
			want = old + 1
		} else {
			requireNoError(t, tx.Rollback())
		}
		if c := b.claimOne(t); c.ID != want {
			t.Fatalf("commit %v: claimed %d, want %d", commit, c.ID, want)
		}
	}
}

// Claims start their walk near the first due task they saw; a task whose
// adding transaction stayed open for longer than that margin is queued
// before it, and a periodic walk from the start finds it.
func TestClaimFindsTaskOfLongAddTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t)

	tx, err := b.db.BeginTx(b.ctx, nil)
	requireNoError(t, err)
	defer tx.Rollback()
	requireNoError(t, b.tm.AddTaskTx(b.ctx, tx, "job", "late", nil))
	var started time.Time
	requireNoError(t, tx.QueryRowContext(b.ctx, `SELECT now()`).Scan(&started))
	// Wait, by the database's clock, until tasks added now are queued well
	// after the open transaction's task.
	for {
		var past bool
		requireNoError(t, b.db.QueryRowContext(b.ctx, `SELECT clock_timestamp() > $1::timestamptz + interval '2 seconds'`, started).Scan(&past))
		if past {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.add(t, "job", "fresh", nil)
	if c := b.claimOne(t); c.Key != "fresh" {
		t.Fatalf("claimed %s, want fresh", c.Key)
	}
	requireNoError(t, tx.Commit())
	deadline := time.Now().Add(30 * time.Second)
	for {
		if got := b.claim(t, 10); len(got) == 1 && got[0].Key == "late" {
			return
		} else if len(got) != 0 {
			t.Fatalf("claimed %v", claimedIDs(got))
		}
		if time.Now().After(deadline) {
			t.Fatal("the task of the long transaction was never claimed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An AddMany whose keys are all distinct (add_distinct) supersedes each
// key's pending task as one with a key twice does: the new task takes the
// older one's place in the queue, a task added with a delay leaves one due
// before it alone, and a key with no pending task just gets its task.
func TestAddManyDistinctKeysSupersedes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	oldK := b.add(t, "job", "K", nil)
	oldL := b.add(t, "job", "L", nil, queue.WithDelay(time.Hour))
	oldP := b.add(t, "job", "P", nil)
	ids, err := b.tm.AddMany(b.ctx, []queue.TaskSpec{
		{Name: "job", Key: "K"},
		{Name: "job", Key: "L"},
		{Name: "job", Key: "N"},
		{Name: "job", Key: "P", Options: []queue.AddOption{queue.WithDelay(time.Hour)}},
	})
	requireNoError(t, err)
	newK, newL, newN, newP := ids[0], ids[1], ids[2], ids[3]
	for old, by := range map[int64]int64{oldK: newK, oldL: newL} {
		if r := b.row(t, old); r.State != string(queue.TaskSuperseded) || r.SupersededBy.Int64 != by {
			t.Fatalf("task %d: %s by %v, want SUPERSEDED by %d", old, r.State, r.SupersededBy, by)
		}
	}
	b.requireState(t, queue.TaskReady, newK, newL, newN, oldP, newP)
	if got, want := b.row(t, newK).DoAfter, b.row(t, oldK).DoAfter; !got.Equal(want) {
		t.Fatalf("the new task of K is due %s, want the place of the one it superseded (%s)", got, want)
	}
	got := claimedIDs(b.claim(t, 10, "job"))
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	if want := []int64{oldP, newK, newL, newN}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("claimed %v, want %v: P's due task and the new tasks of K, L and N (P's new task is due later)", got, want)
	}
}
