package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// This file holds the firing table: one row per firing of a schedule, which
// makes each firing run once across the processes sharing the queue.

// ClaimFiring records that claimedBy (host:pid; processID in the process
// registry, if any) runs firing f and reports true, unless a row for f
// exists already (another process has it): then it reports false.
func (d *PostgresDriver) ClaimFiring(ctx context.Context, f Firing, claimedBy, processID string) (bool, error) {
	q := d.names.render("claimFiring", `
INSERT INTO {{.QObj "schedule_firing"}} (schedule_name, fire_at, claimed_by, process_id, catch_up)
VALUES ($1, $2, $3, nullif($4, ''), $5)
ON CONFLICT (schedule_name, fire_at) DO NOTHING
RETURNING 1`)
	var one int
	err := d.db.QueryRowContext(ctx, q, f.Schedule, f.At, claimedBy, processID, f.CatchUp).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("queue: claim firing %q at %s: %w", f.Schedule, f.At.Format(time.RFC3339Nano), err)
	}
	return true, nil
}

// FinishFiring records when firing f's run ended and its error, if any.
func (d *PostgresDriver) FinishFiring(ctx context.Context, f Firing, runErr error) error {
	q := d.names.render("finishFiring", `
UPDATE {{.QObj "schedule_firing"}} SET finished_at = now(), error = $3
WHERE schedule_name = $1 AND fire_at = $2`)
	var text sql.NullString
	if runErr != nil {
		text = sql.NullString{String: runErr.Error(), Valid: true}
	}
	if _, err := d.db.ExecContext(ctx, q, f.Schedule, f.At, text); err != nil {
		return fmt.Errorf("queue: finish firing %q: %w", f.Schedule, err)
	}
	return nil
}

// LastFiring returns the time of the newest firing of schedule that any
// process claimed; false when it never fired.
func (d *PostgresDriver) LastFiring(ctx context.Context, schedule string) (time.Time, bool, error) {
	q := d.names.render("lastFiring", `SELECT max(fire_at) FROM {{.QObj "schedule_firing"}} WHERE schedule_name = $1`)
	var at sql.NullTime
	if err := d.db.QueryRowContext(ctx, q, schedule).Scan(&at); err != nil {
		return time.Time{}, false, fmt.Errorf("queue: last firing of %q: %w", schedule, err)
	}
	return at.Time, at.Valid, nil
}

// DeleteOldFirings removes firing rows due before the given time, except the
// newest of each schedule, and reports how many.
func (d *PostgresDriver) DeleteOldFirings(ctx context.Context, before time.Time) (int, error) {
	q := d.names.render("deleteOldFirings", `
DELETE FROM {{.QObj "schedule_firing"}} f
WHERE f.fire_at < $1
	AND f.fire_at < (SELECT max(g.fire_at) FROM {{.QObj "schedule_firing"}} g WHERE g.schedule_name = f.schedule_name)`)
	return d.execCount(ctx, "delete old firings", q, before)
}

// RescueFiring hands the newest firing of schedule whose run never ended,
// and whose process's registry entry has expired or stopped, to claimedBy
// (processID) and returns it with Rescued set; false when there is none.
// A firing whose process never registered is not handed over.
func (d *PostgresDriver) RescueFiring(ctx context.Context, schedule, claimedBy, processID string) (Firing, bool, error) {
	q := d.names.render("rescueFiring", `
UPDATE {{.QObj "schedule_firing"}} f
SET claimed_by = $2, process_id = nullif($3, ''), claimed_at = now(), rescues = f.rescues + 1
WHERE (f.schedule_name, f.fire_at) = (
	SELECT o.schedule_name, o.fire_at FROM {{.QObj "schedule_firing"}} o
	WHERE o.schedule_name = $1 AND o.finished_at IS NULL
		AND EXISTS (
			SELECT 1 FROM {{.QObj "process"}} p
			WHERE p.id = o.process_id AND (p.stopped_at IS NOT NULL OR p.expires_at < now()))
	ORDER BY o.fire_at DESC
	LIMIT 1
	FOR UPDATE SKIP LOCKED)
RETURNING f.fire_at, f.catch_up`)
	f := Firing{Schedule: schedule, Rescued: true}
	err := d.db.QueryRowContext(ctx, q, schedule, claimedBy, processID).Scan(&f.At, &f.CatchUp)
	if errors.Is(err, sql.ErrNoRows) {
		return Firing{}, false, nil
	}
	if err != nil {
		return Firing{}, false, fmt.Errorf("queue: rescue firing of %q: %w", schedule, err)
	}
	return f, true, nil
}
