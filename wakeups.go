package queue

import (
	"context"
	"database/sql"
	"sync"
	"time"

	"github.com/lib/pq"
)

// wakeups announces tasks added outside a caller's transaction while other
// adds of the driver are under way, after their insert committed, in a
// transaction of its own.
//
// A transaction that sends a NOTIFY holds a lock, shared by every database
// of the server, from its commit until the commit is on disk: producers
// that add tasks one at a time and notify in the same transaction commit
// one after another, each waiting for its own disk flush (on a durable
// cluster, under a thousand adds a second here). A NOTIFY sent on its own,
// with synchronous_commit off for its transaction, writes nothing worth
// waiting for. Names waiting while an announcement is under way go out
// together in the next one: one statement in flight per driver. An add on
// its own still notifies in its own transaction, which saves the
// announcement's round trip.
//
// A failed announcement is dropped: idle streams also poll.
type wakeups struct {
	db      *sql.DB
	channel string

	mu      sync.Mutex
	pending map[string]struct{}
	sending bool
	closed  bool
	done    sync.WaitGroup
}

// wakeTimeout bounds one announcement.
const wakeTimeout = 5 * time.Second

func newWakeups(db *sql.DB, channel string) *wakeups {
	return &wakeups{db: db, channel: channel, pending: map[string]struct{}{}}
}

// announce sends one notification per name, soon, without waiting for it.
func (w *wakeups) announce(names []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	for _, n := range names {
		w.pending[n] = struct{}{}
	}
	if !w.sending {
		w.sending = true
		w.done.Add(1)
		go w.send()
	}
}

func (w *wakeups) send() {
	defer w.done.Done()
	for {
		w.mu.Lock()
		if len(w.pending) == 0 {
			w.sending = false
			w.mu.Unlock()
			return
		}
		names := make([]string, 0, len(w.pending))
		for n := range w.pending {
			names = append(names, n)
		}
		clear(w.pending)
		w.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), wakeTimeout)
		w.db.ExecContext(ctx, `SELECT set_config('synchronous_commit', 'off', true), count(pg_notify($1, n)) FROM unnest($2::text[]) AS n`,
			w.channel, pq.Array(names))
		cancel()
	}
}

// close waits for the announcement under way, if any; later ones are
// dropped.
func (w *wakeups) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.done.Wait()
}
