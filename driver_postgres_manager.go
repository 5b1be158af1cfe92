package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lib/pq"
)

// This file holds what the SyncManager needs from PostgreSQL beyond claiming
// and finishing: sweeping tasks nobody handles, deduplicating scheduled runs
// across processes, exclusive streams, and LISTEN for new tasks.

// ErrListenUnsupported is returned by Listen when the driver has no
// connection string to open a listening connection with (it was made from a
// *sql.DB, or WithPooler, without WithListenDSN) or notifications are off.
// The SyncManager then polls (WithPollInterval).
var ErrListenUnsupported = errors.New("queue: LISTEN needs a connection string and notifications on")

// WithListenDSN gives the driver the connection string for its LISTEN
// connection: needed by a driver made from a *sql.DB, and behind a pooler
// (WithPooler), where it must reach PostgreSQL directly, not the pooler.
func WithListenDSN(dsn string) PostgresOption {
	return func(c *postgresConfig) { c.listenDSN = dsn }
}

// CancelUnhandled cancels up to limit due pending tasks whose name is not in
// known, with a message naming the missing handler.
func (d *PostgresDriver) CancelUnhandled(ctx context.Context, known []string, limit int) (int, error) {
	return d.execCount(ctx, "cancel unhandled tasks", d.q.cancelUnhandled, pq.Array(known), limit)
}

// StartScheduledRun records that the scheduled action name starts now and
// reports true, unless a run of it started less than window ago (on any
// process), in which case it reports false and records nothing.
func (d *PostgresDriver) StartScheduledRun(ctx context.Context, name, startedBy string, window time.Duration) (bool, error) {
	var one int
	err := d.db.QueryRowContext(ctx, d.q.scheduleRun, name, startedBy, window.Seconds()).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("queue: start scheduled run %q: %w", name, err)
	}
	return true, nil
}

// Listen calls h.Task with the task name of every task added (once per
// statement and name), h.Control with every control announcement, and
// h.Reconnect each time the listening connection is established, the first
// time included (notifications may have been missed before). It returns at
// once: the connection is made, and remade after a loss, in the
// background. The returned function stops listening.
func (d *PostgresDriver) Listen(ctx context.Context, h ListenHandlers) (stop func(), err error) {
	dsn := d.dsn
	if d.listenDSN != "" || d.pooler {
		// Behind a pooler only a direct connection string can LISTEN.
		dsn = d.listenDSN
	}
	if dsn == "" || !d.notify {
		return nil, ErrListenUnsupported
	}
	onError := func(err error) {
		if h.Error != nil {
			h.Error(fmt.Errorf("queue: listen: %s", redactSecrets(err.Error(), dsn)))
		}
	}
	l := pq.NewListener(dsn, 100*time.Millisecond, 10*time.Second, func(ev pq.ListenerEventType, err error) {
		if err != nil {
			onError(err)
		}
	})
	done := make(chan struct{})
	go func() {
		// Listen waits until the connection is up; Close ends the wait.
		for _, ch := range []string{d.channel, d.controlChannel} {
			if err := l.Listen(ch); err != nil {
				select {
				case <-done:
				default:
					onError(err)
				}
				return
			}
		}
		if h.Reconnect != nil {
			h.Reconnect()
		}
		for {
			select {
			case <-done:
				return
			case n, ok := <-l.Notify:
				switch {
				case !ok:
					return
				case n == nil: // reconnected: nil marks a possible gap
					if h.Reconnect != nil {
						h.Reconnect()
					}
				case n.Channel == d.controlChannel:
					if h.Control != nil {
						h.Control(n.Extra)
					}
				case h.Task != nil:
					h.Task(n.Extra)
				}
			case <-time.After(90 * time.Second):
				go l.Ping()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); l.Close() }) }, nil
}
