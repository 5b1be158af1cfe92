package queue

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/lib/pq"
)

// This file holds the process registry (one row per running SyncManager)
// and the sweep of tasks that no process of the fleet handles.

// Heartbeat registers p or renews its entry: it counts as live for ttl.
func (d *PostgresDriver) Heartbeat(ctx context.Context, p Process, ttl time.Duration) error {
	q := d.names.render("heartbeat", `
INSERT INTO {{.QObj "process"}} AS p (id, host, pid, version, expires_at, task_names, streams, schedules)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5), $6, $7, $8)
ON CONFLICT (id) DO UPDATE
SET heartbeat_at = now(), expires_at = excluded.expires_at, stopped_at = NULL`)
	_, err := d.db.ExecContext(ctx, q, p.ID, p.Host, p.PID, p.Version, ttl.Seconds(),
		pq.Array(nonNil(p.TaskNames)), pq.Array(nonNil(p.Streams)), pq.Array(nonNil(p.Schedules)))
	if err != nil {
		return fmt.Errorf("queue: heartbeat: %w", err)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// MarkStopped records that the process with id shut down: it is no longer
// live.
func (d *PostgresDriver) MarkStopped(ctx context.Context, id string) error {
	q := d.names.render("markStopped", `
UPDATE {{.QObj "process"}} SET stopped_at = now(), expires_at = least(expires_at, now()) WHERE id = $1`)
	if _, err := d.db.ExecContext(ctx, q, id); err != nil {
		return fmt.Errorf("queue: mark process stopped: %w", err)
	}
	return nil
}

// ListProcesses returns the registered processes, live ones first, then
// newest first.
func (d *PostgresDriver) ListProcesses(ctx context.Context) ([]Process, error) {
	q := d.names.render("listProcesses", `
SELECT id, host, pid, version, started_at, heartbeat_at, expires_at, stopped_at,
	stopped_at IS NULL AND expires_at > now() AS live, task_names, streams, schedules
FROM {{.QObj "process"}}
ORDER BY live DESC, started_at DESC, id`)
	rows, err := d.db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("queue: list processes: %w", err)
	}
	defer rows.Close()
	var out []Process
	for rows.Next() {
		var p Process
		var stopped sql.NullTime
		if err := rows.Scan(&p.ID, &p.Host, &p.PID, &p.Version, &p.Started, &p.LastHeartbeat, &p.Expires, &stopped,
			&p.Live, pq.Array(&p.TaskNames), pq.Array(&p.Streams), pq.Array(&p.Schedules)); err != nil {
			return nil, fmt.Errorf("queue: list processes: %w", err)
		}
		p.Stopped = stopped.Time
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("queue: list processes: %w", err)
	}
	return out, nil
}

// DeleteDeadProcesses removes the entries of processes that stopped or
// stopped renewing more than deadFor ago, and reports how many.
func (d *PostgresDriver) DeleteDeadProcesses(ctx context.Context, deadFor time.Duration) (int, error) {
	q := d.names.render("deleteDeadProcesses", `
DELETE FROM {{.QObj "process"}} WHERE expires_at < now() - make_interval(secs => $1)`)
	return d.execCount(ctx, "delete dead processes", q, deadFor.Seconds())
}

// CancelUnhandledFleet cancels up to limit due pending tasks whose name
// neither this process (own) nor any live process handles, and that no
// process has handled within grace. A name no registered process ever
// handled is cancelled at once. The message says which case it was.
func (d *PostgresDriver) CancelUnhandledFleet(ctx context.Context, own []string, grace time.Duration, limit int) (int, error) {
	q := d.names.render("cancelUnhandledFleet", `
WITH handled AS (
	SELECT n AS task_name, max(p.expires_at) AS until
	FROM {{.QObj "process"}} p, unnest(p.task_names) AS n
	GROUP BY n
), doomed AS (
	SELECT q.id, q.task_name FROM {{.Table}} q
	WHERE q.state IN ('READY', 'RETRY') AND q.do_after <= now()
		AND q.task_name <> ALL ($1::text[])
		AND NOT EXISTS (
			SELECT 1 FROM handled h
			WHERE h.task_name = q.task_name AND h.until > now() - make_interval(secs => $3))
	ORDER BY q.id
	LIMIT $2
	FOR UPDATE OF q SKIP LOCKED
)
UPDATE {{.Table}} t
SET state = 'CANCELLED', finished_at = now(),
	last_attempt_message = CASE WHEN h.until IS NULL
		THEN format('no handler registered for task name "%s": no process sharing the queue has handled it', d.task_name)
		ELSE format('no handler registered for task name "%s": no live process handles it, and the last one that did went away at %s, more than %s ago',
			d.task_name, to_char(h.until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'), $4::text)
	END
FROM doomed d LEFT JOIN handled h ON h.task_name = d.task_name
WHERE t.id = d.id`)
	return d.execCount(ctx, "cancel unhandled tasks", q, pq.Array(nonNil(own)), limit, grace.Seconds(), grace.String())
}
