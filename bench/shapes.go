package main

import (
	"context"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/esync/queue"
)

// The backlog shapes: what a queue may hold besides the tasks that are due.
// Each is measured as the drain of ShapeDue due tasks on distinct keys
// behind it, by a SyncManager from its Start (a River client on River's
// side), and compared with the same drain on a queue that holds nothing
// else, measured in the same round. Every backlog, the empty one too, is
// settled before the due tasks are added (settle): a queue that holds a
// backlog in steady state has been vacuumed and its pages written out, and
// the drain should not pay for the bulk insert that built it here.

// esyncShape fills an esync queue with a backlog and returns how many of
// its tasks are DONE.
type esyncShape func(*esyncBench, context.Context) (done int, err error)

// riverShape fills River's table with a backlog and returns how many of
// its jobs are completed.
type riverShape func(*riverBench, context.Context) (completed int, err error)

// shapeMetrics are the backlog rows of the table: the drain on an otherwise
// empty queue first, then each shape compared with it.
func shapeMetrics(cfg config, fresh freshDatabases) []*metric {
	drain := fmt.Sprintf("drain of %d due", cfg.ShapeDue)
	row := func(name, esyncDoes, riverDoes string, e esyncShape, r riverShape) *metric {
		m := &metric{
			Name:      drain + " " + name + " (tasks/s)",
			EsyncDoes: "SyncManager; " + esyncDoes,
			RiverDoes: riverDoes,
			esync: fresh.esync(func(b *esyncBench, ctx context.Context) (measurement, error) {
				return b.managerDrain(ctx, e, cfg.ShapeDue)
			}),
		}
		if r != nil {
			m.RiverDoes = "client as in `river bench`; " + riverDoes
			m.river = fresh.river(func(b *riverBench, ctx context.Context) (measurement, error) {
				return b.drainBehind(ctx, r)
			})
		}
		return m
	}
	baseline := row("alone", "nothing else queued", "nothing else queued", emptyShape, emptyRiverShape)
	shapes := []*metric{
		baseline,
		row(fmt.Sprintf("behind %d due in 1h", cfg.ShapeLater),
			"AddMany WithDelay(1h), other keys", "InsertManyFast, ScheduledAt in 1h",
			(*esyncBench).laterShape, (*riverBench).laterShape),
		row(fmt.Sprintf("beside 1 busy key with %d queued", cfg.ShapeHot),
			"the key's task claimed elsewhere, 1h lease; AddMany of the rest", "",
			(*esyncBench).hotKeyShape, nil),
		row(fmt.Sprintf("beside %d busy keys with %d queued each", cfg.ShapeBusyKeys, cfg.ShapeBusyEach),
			"their tasks claimed elsewhere, 1h lease; AddMany of the rest", "",
			(*esyncBench).busyKeysShape, nil),
		row(fmt.Sprintf("beside %d finished", cfg.ShapeDone),
			"DONE rows by INSERT … SELECT", "completed rows by INSERT … SELECT",
			(*esyncBench).finishedShape, (*riverBench).finishedShape),
	}
	for _, m := range shapes[1:] {
		m.Baseline = baseline
	}
	return shapes
}

// drainBehind fills River's table with shape, adds ShapeDue due jobs and
// times a client until they completed, as esync's managerDrain does.
func (b *riverBench) drainBehind(ctx context.Context, shape riverShape) (measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	completed, err := shape(b, ctx)
	if err == nil {
		err = settle(ctx, b.pool.Exec, "river_job")
	}
	if err != nil {
		return measurement{}, err
	}
	var rows int
	if err := b.pool.QueryRow(ctx, "SELECT count(*) FROM river_job").Scan(&rows); err != nil {
		return measurement{}, err
	}
	n := b.cfg.ShapeDue
	if err := b.preload(ctx, n, nil); err != nil {
		return measurement{}, err
	}
	elapsed, spent, err := b.work(ctx, n)
	if err != nil {
		return measurement{}, err
	}
	if err := b.checkCompleted(ctx, completed+n, rows+n); err != nil {
		return measurement{}, err
	}
	return measurement{Rate: rate(n, elapsed), Note: spent}, nil
}

// settle brings a table holding a backlog to a steady state: VACUUM
// ANALYZE, as autovacuum would have by then, and a CHECKPOINT, so that the
// backlog's insert is written out before the drain is timed. exec runs a
// statement on the side's own connection pool.
func settle[R any](ctx context.Context, exec func(context.Context, string, ...any) (R, error), table string) error {
	for _, q := range []string{"VACUUM ANALYZE " + table, "CHECKPOINT"} {
		if _, err := exec(ctx, q); err != nil {
			return fmt.Errorf("settle the backlog: %s: %w", q, err)
		}
	}
	return nil
}

// emptyShape leaves the queue empty: the baseline.
func emptyShape(*esyncBench, context.Context) (int, error) { return 0, nil }

// emptyRiverShape leaves River's table empty: the baseline.
func emptyRiverShape(*riverBench, context.Context) (int, error) { return 0, nil }

// laterShape adds ShapeLater tasks due in an hour, on keys of their own, as
// a user scheduling work ahead would.
func (b *esyncBench) laterShape(ctx context.Context) (int, error) {
	return 0, b.addBatched(ctx, keyedSpecs("later", 0, b.cfg.ShapeLater, 0, queue.WithDelay(time.Hour)))
}

// laterShape inserts ShapeLater jobs scheduled an hour ahead.
func (b *riverBench) laterShape(ctx context.Context) (int, error) {
	return 0, b.preload(ctx, b.cfg.ShapeLater, &river.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
}

// hotKeyShape makes one key busy with ShapeHot tasks queued behind its
// running one.
func (b *esyncBench) hotKeyShape(ctx context.Context) (int, error) {
	return 0, b.busyKeys(ctx, 1, b.cfg.ShapeHot)
}

// busyKeysShape makes ShapeBusyKeys keys busy with ShapeBusyEach tasks
// queued behind each one's running task.
func (b *esyncBench) busyKeysShape(ctx context.Context) (int, error) {
	return 0, b.busyKeys(ctx, b.cfg.ShapeBusyKeys, b.cfg.ShapeBusyEach)
}

// busyKeys adds one task for each of keys keys and claims them all under an
// hour's lease through a driver of its own, as a worker of another process
// running long tasks would; then it adds behind tasks per key through the
// public API, the keys taking turns as they would in a stream of updates.
// A SyncManager started afterwards finds those keys busy.
func (b *esyncBench) busyKeys(ctx context.Context, keys, behind int) error {
	if err := b.addBatched(ctx, keyedSpecs("busy", 0, keys, 0)); err != nil {
		return err
	}
	other, err := queue.OpenPostgres(b.dsn)
	if err != nil {
		return err
	}
	defer other.Close()
	params := queue.ClaimParams{Names: []string{noopTaskName}, Limit: keys, Lease: time.Hour}
	for claimed := 0; claimed < keys; {
		c, err := other.Claim(ctx, params)
		if err != nil {
			return err
		}
		if len(c) == 0 {
			return fmt.Errorf("esync busy keys: %d of %d claimed, then nothing", claimed, keys)
		}
		claimed += len(c)
		params.Limit = keys - claimed
	}
	return b.addBatched(ctx, keyedSpecs("busy", keys, keys*behind, keys))
}

// finishedShape inserts ShapeDone rows that look like tasks that ran and
// finished within the last hour and wait for retention: DONE after one
// attempt, ids from the table's sequence.
func (b *esyncBench) finishedShape(ctx context.Context) (int, error) {
	n := b.cfg.ShapeDone
	_, err := b.driver.DB().ExecContext(ctx, `INSERT INTO `+b.table()+`
	(task_name, task_key, data, created_by, created_at, do_after, last_attempted, finished_at, state, attempts, last_attempt_message)
SELECT $1, 'done' || g, jsonb_build_object('num', g), 'bench', t, t, t + interval '1 millisecond', t + interval '2 milliseconds', 'DONE', 1, ''
FROM generate_series(1, $2::int) g
CROSS JOIN LATERAL (SELECT now() - interval '1 hour' + g * (interval '1 hour' / $2::int) AS t) s`, noopTaskName, n)
	if err != nil {
		return 0, fmt.Errorf("esync finished rows: %w", err)
	}
	return n, nil
}

// finishedShape inserts ShapeDone rows that look like jobs completed
// within the last hour after one attempt.
func (b *riverBench) finishedShape(ctx context.Context) (int, error) {
	n := b.cfg.ShapeDone
	_, err := b.pool.Exec(ctx, `INSERT INTO river_job
	(args, attempt, attempted_at, attempted_by, created_at, finalized_at, kind, max_attempts, priority, queue, scheduled_at, state)
SELECT jsonb_build_object('num', g), 1, t + interval '1 millisecond', ARRAY['bench'], t, t + interval '2 milliseconds',
	$1, 25, 1, 'default', t, 'completed'
FROM generate_series(1, $2::int) g
CROSS JOIN LATERAL (SELECT now() - interval '1 hour' + g * (interval '1 hour' / $2::int) AS t) s`, noopArgs{}.Kind(), n)
	if err != nil {
		return 0, fmt.Errorf("river finished rows: %w", err)
	}
	return n, nil
}
