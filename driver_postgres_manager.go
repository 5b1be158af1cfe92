package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"time"

	"github.com/lib/pq"
)

// This file holds what the SyncManager needs from PostgreSQL beyond claiming
// and finishing: sweeping tasks nobody handles, deduplicating scheduled runs
// across processes, exclusive streams, and LISTEN for new tasks.

// ErrListenUnsupported is returned by Listen when the driver has no
// connection string to open a listening connection with (it was made from a
// *sql.DB without WithListenDSN) or notifications are off.
var ErrListenUnsupported = errors.New("queue: LISTEN needs a connection string and notifications on")

// WithListenDSN gives a driver made from a *sql.DB the connection string for
// its LISTEN connection.
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

// ExclusiveLock is a cluster-wide lock held on a dedicated connection.
type ExclusiveLock struct {
	conn *sql.Conn
	key  int64
}

// TryExclusive takes the cluster-wide lock for name without waiting. It
// returns nil and no error when another process holds it.
func (d *PostgresDriver) TryExclusive(ctx context.Context, name string) (*ExclusiveLock, error) {
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue: exclusive %q: %w", name, err)
	}
	key := int64(d.names.LockClass)<<32 | int64(crc32.ChecksumIEEE([]byte("stream:"+name)))
	var ok bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil || !ok {
		conn.Close()
		if err != nil {
			return nil, fmt.Errorf("queue: exclusive %q: %w", name, err)
		}
		return nil, nil
	}
	return &ExclusiveLock{conn: conn, key: key}, nil
}

// Check reports an error if the lock's connection is gone (and with it the
// lock).
func (l *ExclusiveLock) Check(ctx context.Context) error {
	return l.conn.PingContext(ctx)
}

// Release gives the lock up.
func (l *ExclusiveLock) Release(ctx context.Context) error {
	_, err := l.conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, l.key)
	l.conn.Close()
	return err
}

// Listen calls h.Task with the task name of every task added (once per
// statement and name), h.Control with every control announcement, and
// h.Reconnect each time the listening connection is established, the first
// time included (notifications may have been missed before). It returns at
// once: the connection is made, and remade after a loss, in the
// background. The returned function stops listening.
func (d *PostgresDriver) Listen(ctx context.Context, h ListenHandlers) (stop func(), err error) {
	dsn := d.dsn
	if d.listenDSN != "" {
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
