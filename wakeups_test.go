package queue_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"
)

// Tasks are announced, by task name, when added on their own, in a caller's
// transaction (at its commit) and beside other adds (after their commit).
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

	// Adds side by side: those beside another one announce after their
	// commit.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			_, err := b.tm.Add(b.ctx, "side.by.side", fmt.Sprint("s", i), nil)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		requireNoError(t, err)
	}
	expect("side.by.side")
}
