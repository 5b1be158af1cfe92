package queue_test

import (
	"testing"
	"time"

	"github.com/lib/pq"
)

// Tasks added on their own are announced after their insert commits, tasks
// added in a caller's transaction at its commit; each announcement names
// the task name.
func TestAddAnnouncesTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l := pq.NewListener(b.dsn, 10*time.Millisecond, time.Second, nil)
	defer l.Close()
	if err := l.Listen(b.driver.Channel()); err != nil {
		t.Fatal(err)
	}
	expect := func(name string) {
		t.Helper()
		for {
			select {
			case n := <-l.Notify:
				if n == nil {
					continue // reconnected
				}
				if n.Extra != name {
					t.Fatalf("announced %q, want %q", n.Extra, name)
				}
				return
			case <-b.ctx.Done():
				t.Fatalf("no announcement of %q", name)
			}
		}
	}
	b.add(t, "alone", "k1", nil)
	expect("alone")

	tx, err := b.db.BeginTx(b.ctx, nil)
	requireNoError(t, err)
	requireNoError(t, b.tm.AddTaskTx(b.ctx, tx, "in.tx", "k2", nil))
	requireNoError(t, tx.Commit())
	expect("in.tx")
}
