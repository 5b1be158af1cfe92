package queue

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// DefaultExclusiveLease is how long an Exclusive stream's lease lasts
// without renewal: the longest a stream stays unclaimed after its holder
// died without giving it up.
const DefaultExclusiveLease = 30 * time.Second

// ErrExclusiveLost is reported by (*ExclusiveLock).Check once the lease is
// gone: another process took it over, it was released, or it could not be
// renewed in time; and by a claim fenced by a lease another process took
// over (ClaimParams.Exclusive).
var ErrExclusiveLost = errors.New("queue: exclusive lease lost")

// WithExclusiveLease sets how long the lease of an Exclusive stream lasts
// without renewal (default DefaultExclusiveLease, at least 300ms). The
// holder renews it every quarter of that; another process takes the stream
// over once a lease has run out, so a holder that died stalls its stream
// for at most this long.
func WithExclusiveLease(d time.Duration) PostgresOption {
	return func(c *postgresConfig) { c.exclusiveLease = d }
}

// ExclusiveLock is this process's lease on an Exclusive stream: a row
// beside the queue with an expiry, renewed in the background while held.
// It holds through a transaction-pooling PgBouncer, unlike a session
// lock. Each new holder gets a larger Fence.
//
// A stream's claims are fenced by the lease (ClaimParams.Exclusive): a
// claim takes nothing unless the lease still carries this holder's token
// and has not expired when the claim runs, so a holder that was paused
// past its lease and taken over claims nothing, whatever it last checked.
type ExclusiveLock struct {
	d     *PostgresDriver
	name  string
	token string
	fence int64
	lease time.Duration

	mu         sync.Mutex
	validUntil time.Time // local time before which the lease surely holds
	lost       bool
	stop       chan struct{}
	done       chan struct{}
}

// TryExclusive takes the lease on name without waiting: a free name, or one
// whose lease ran out. It returns nil and no error when another process
// holds it.
func (d *PostgresDriver) TryExclusive(ctx context.Context, name string) (*ExclusiveLock, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	l := &ExclusiveLock{d: d, name: name, token: hex.EncodeToString(b[:]), lease: d.exclusiveLease,
		stop: make(chan struct{}), done: make(chan struct{})}
	host, _ := os.Hostname()
	sent := time.Now()
	err := d.db.QueryRowContext(ctx, d.q.exclusiveTake, name, l.token, fmt.Sprintf("%s:%d", host, os.Getpid()),
		l.lease.Seconds()).Scan(&l.fence)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("queue: exclusive %q: %w", name, err)
	}
	l.validUntil = sent.Add(l.lease)
	go l.keep()
	return l, nil
}

// Fence is the lease's fencing number: larger for every new holder of the
// stream, so a downstream system can refuse writes from an older holder.
func (l *ExclusiveLock) Fence() int64 { return l.fence }

// Check reports whether the lease still holds, for at least half its
// length, renewing it first if it must; it returns ErrExclusiveLost (or the
// renewal's error) otherwise.
func (l *ExclusiveLock) Check(ctx context.Context) error {
	l.mu.Lock()
	lost, left := l.lost, time.Until(l.validUntil)
	l.mu.Unlock()
	if lost {
		return fmt.Errorf("%w: %q", ErrExclusiveLost, l.name)
	}
	if left >= l.lease/2 {
		return nil
	}
	if err := l.renew(ctx); err != nil {
		return err
	}
	return nil
}

// confirm tells why a claim fenced by the lease took nothing: it returns
// ErrExclusiveLost, and the lease is lost for good, when another process
// took it over or it was released. A lease that still carries this
// holder's token but expired unrenewed is renewed, as Check would.
func (l *ExclusiveLock) confirm(ctx context.Context) error {
	var held sql.NullBool // NULL: the token is gone; false: expired
	if err := l.d.db.QueryRowContext(ctx, l.d.q.exclusiveHeld, l.name, l.token).Scan(&held); err != nil {
		return fmt.Errorf("queue: exclusive %q: %s", l.name, redactSecrets(err.Error(), l.d.dsn))
	}
	switch {
	case !held.Valid:
		l.mu.Lock()
		l.lost = true
		l.mu.Unlock()
		return fmt.Errorf("%w: %q was taken over before the claim", ErrExclusiveLost, l.name)
	case !held.Bool:
		return l.renew(ctx)
	}
	return nil
}

// keep renews the lease every quarter of its length until Release or
// until it is lost.
func (l *ExclusiveLock) keep() {
	defer close(l.done)
	t := time.NewTicker(l.lease / 4)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), l.lease/4)
			err := l.renew(ctx)
			cancel()
			if errors.Is(err, ErrExclusiveLost) {
				return
			}
		}
	}
}

// renew pushes the lease's expiry to now plus its length, fenced by its
// token; a lease another process took over is lost for good.
func (l *ExclusiveLock) renew(ctx context.Context) error {
	sent := time.Now()
	res, err := l.d.db.ExecContext(ctx, l.d.q.exclusiveRenew, l.name, l.token, l.lease.Seconds())
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		if time.Now().After(l.validUntil) {
			l.lost = true
			return fmt.Errorf("%w: %q could not be renewed in time: %s", ErrExclusiveLost, l.name, redactSecrets(err.Error(), l.d.dsn))
		}
		return fmt.Errorf("queue: exclusive %q: renew: %s", l.name, redactSecrets(err.Error(), l.d.dsn))
	case n == 0:
		l.lost = true
		return fmt.Errorf("%w: %q was taken over", ErrExclusiveLost, l.name)
	}
	if !l.lost {
		l.validUntil = sent.Add(l.lease)
	}
	return nil
}

// Release gives the lease up, so another process can take the stream at
// once. It is safe to call more than once.
func (l *ExclusiveLock) Release(ctx context.Context) error {
	l.mu.Lock()
	select {
	case <-l.stop:
		l.mu.Unlock()
		return nil
	default:
		close(l.stop)
	}
	l.lost = true
	l.mu.Unlock()
	<-l.done
	if _, err := l.d.db.ExecContext(ctx, l.d.q.exclusiveRelease, l.name, l.token); err != nil {
		return fmt.Errorf("queue: exclusive %q: release: %w", l.name, err)
	}
	return nil
}
