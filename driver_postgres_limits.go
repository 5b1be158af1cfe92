package queue

import (
	"context"
	"fmt"
	"time"
)

// This file holds the cluster-wide limits of streams: run permits per
// window, and holding a stream after a far side asked to wait.

// TakeRunPermits grants up to n runs of stream within the current window of
// length per (windows are aligned to multiples of per), where limit runs
// are allowed per window across every process, and returns how many were
// granted and when the window ends.
func (d *PostgresDriver) TakeRunPermits(ctx context.Context, stream string, n, limit int, per time.Duration) (int, time.Time, error) {
	var granted int
	var ends float64
	if err := d.db.QueryRowContext(ctx, d.q.takePermits, stream, n, limit, per.Seconds()).Scan(&granted, &ends); err != nil {
		return 0, time.Time{}, fmt.Errorf("queue: take run permits of stream %q: %w", stream, err)
	}
	return granted, epochTime(ends), nil
}

// HoldStream keeps every process from claiming tasks of stream until the
// given time (unless it is held longer already).
func (d *PostgresDriver) HoldStream(ctx context.Context, stream string, until time.Time) error {
	if _, err := d.db.ExecContext(ctx, d.q.holdStream, stream, float64(until.UnixMicro())/1e6); err != nil {
		return fmt.Errorf("queue: hold stream %q: %w", stream, err)
	}
	return nil
}
