package queue_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
)

// finishWith records one outcome with a message and fails the test if the
// lease was lost.
func (b *testBundle) finishWith(t *testing.T, c queue.ClaimedTask, state queue.TaskState, message string) {
	t.Helper()
	lost, err := b.driver.Finish(b.ctx, []queue.Completion{{Lease: c.Lease, State: state, Message: message}})
	if err != nil || len(lost) != 0 {
		t.Fatalf("finish %d: %v, lost %v", c.ID, err, lost)
	}
}

// attempts is a task's errors as "attempt state message" lines.
func (b *testBundle) attempts(t *testing.T, id int64) []string {
	t.Helper()
	task, err := b.driver.GetTask(b.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range task.Errors {
		if e.At.IsZero() || e.At.After(time.Now().Add(time.Minute)) {
			t.Errorf("task %d: attempt %d ended at %s", id, e.Attempt, e.At)
		}
		out = append(out, fmt.Sprintf("%d %s %s", e.Attempt, e.State, e.Message))
	}
	return out
}

func requireAttempts(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A task that fails twice and then succeeds keeps both failures' messages
// with their attempt numbers; the success adds nothing, and a task that
// succeeds at once keeps no errors at all.
func TestAttemptErrorsKeepEachFailure(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.add(t, "job", "k", nil)
	b.finishWith(t, b.claimOne(t), queue.TaskRetry, "CRM answered 503")
	b.finishWith(t, b.claimOne(t), queue.TaskRetry, "connection reset")
	b.finishWith(t, b.claimOne(t), queue.TaskDone, "synced")
	requireAttempts(t, b.attempts(t, id), "1 RETRY CRM answered 503", "2 RETRY connection reset")
	if task, _ := b.driver.GetTask(b.ctx, id); task.State != queue.TaskDone || task.Message != "synced" {
		t.Fatalf("task %s %q", task.State, task.Message)
	}

	at := b.add(t, "job", "k2", nil)
	b.finishWith(t, b.claimOne(t), queue.TaskDone, "synced")
	requireAttempts(t, b.attempts(t, at))
	if n := b.count(t, `SELECT count(*) FROM %s WHERE id = $1 AND errors IS NULL`, at); n != 1 {
		t.Fatal("a task that succeeded at once has errors stored")
	}
}

// A release with a message is kept, one without is not, nor one of a task
// handed back unrun (a stream's rate limit); a retry of a task
// whose cancellation was requested is kept as CANCELLED, with the action's
// own message.
func TestAttemptErrorsReleaseAndCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.add(t, "job", "k", nil)
	b.finishWith(t, b.claimOne(t), queue.TaskReady, "")
	b.finishWith(t, b.claimOne(t), queue.TaskReady, "released unrun: the stream's rate limit was reached")
	b.finishWith(t, b.claimOne(t), queue.TaskReady, "released at shutdown")
	c := b.claimOne(t)
	requireNoError(t, b.tm.Cancel(b.ctx, id))
	b.finishWith(t, c, queue.TaskRetry, "timed out")
	requireAttempts(t, b.attempts(t, id), "1 READY released at shutdown", "1 CANCELLED timed out")
}

// An attempt whose lease expired shows the rescue's message.
func TestAttemptErrorsRescued(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.add(t, "job", "k", nil)
	b.finishWith(t, b.claimOne(t), queue.TaskRetry, "CRM answered 503")
	b.claimLease(t, 1, time.Millisecond)
	eventually(t, 10*time.Second, "the lease to expire", func() bool {
		return b.count(t, `SELECT count(*) FROM %s WHERE lease_expires_at < now()`) == 1
	})
	if n, err := b.driver.RescueExpired(b.ctx, queue.RescueParams{}); err != nil || n != 1 {
		t.Fatalf("rescue: %d, %v", n, err)
	}
	requireAttempts(t, b.attempts(t, id), "1 RETRY CRM answered 503",
		"2 RETRY lease expired: the worker stopped or could not reach the database")
}

// A task retried without end keeps only its last 20 errors; the last
// attempt it may make fails it, and its error says FAILED.
func TestAttemptErrorsBounded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.add(t, "job", "k", nil, queue.WithMaxAttempts(25))
	for i := 1; i <= 25; i++ {
		b.finishWith(t, b.claimOne(t), queue.TaskRetry, fmt.Sprintf("failure %d", i))
	}
	var want []string
	for i := 6; i <= 24; i++ {
		want = append(want, fmt.Sprintf("%d RETRY failure %d", i, i))
	}
	requireAttempts(t, b.attempts(t, id), append(want, "25 FAILED failure 25")...)
}
