package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// riverBench is the River side: River's schema in its own database, reached
// through pgx and riverpgxv5 as River's own `river bench` does.
type riverBench struct {
	cfg      config
	pool     *pgxpool.Pool
	driver   *riverpgxv5.Driver
	workers  *river.Workers
	logger   *slog.Logger
	inserter *river.Client[pgx.Tx] // insert-only: never started
}

// noopWorker completes every job at once.
type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

// Work does nothing.
func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

// newRiverBench connects to dsn with a pgxpool of maxConns connections, or
// of pgxpool's default size when 0 (as `river bench` does), and migrates
// River's schema with rivermigrate.
func newRiverBench(ctx context.Context, dsn string, cfg config, maxConns int) (*riverBench, error) {
	poolCfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if maxConns > 0 {
		poolCfg.MaxConns = int32(maxConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, err
	}
	b := &riverBench{
		cfg:     cfg,
		pool:    pool,
		driver:  riverpgxv5.New(pool),
		workers: river.NewWorkers(),
		logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	river.AddWorker(b.workers, &noopWorker{})
	migrator, err := rivermigrate.New(b.driver, nil)
	if err == nil {
		_, err = migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("river migrate: %w", err)
	}
	b.inserter, err = river.NewClient(b.driver, &river.Config{Logger: b.logger, Workers: b.workers})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return b, nil
}

// Close closes the pool.
func (b *riverBench) Close() error {
	b.pool.Close()
	return nil
}

// jobs builds n no-op jobs, inserted with opts (nil: River's defaults).
func jobs(n int, opts *river.InsertOpts) []river.InsertManyParams {
	out := make([]river.InsertManyParams, n)
	for i := range out {
		out[i] = river.InsertManyParams{Args: noopArgs{Num: i}, InsertOpts: opts}
	}
	return out
}

// InsertMany times one Client.InsertMany of InsertN jobs: a multi-row
// INSERT that returns the rows, like esync's AddMany returns IDs.
func (b *riverBench) InsertMany(ctx context.Context) (measurement, error) {
	return b.timeInsert(ctx, func(ctx context.Context, p []river.InsertManyParams) (int, error) {
		res, err := b.inserter.InsertMany(ctx, p)
		return len(res), err
	})
}

// InsertManyFast times one Client.InsertManyFast of InsertN jobs, which
// riverpgxv5 sends with COPY FROM and which returns only a count.
func (b *riverBench) InsertManyFast(ctx context.Context) (measurement, error) {
	return b.timeInsert(ctx, b.inserter.InsertManyFast)
}

func (b *riverBench) timeInsert(ctx context.Context, insert func(context.Context, []river.InsertManyParams) (int, error)) (measurement, error) {
	batch := jobs(b.cfg.InsertN, nil)
	start := time.Now()
	n, err := insert(ctx, batch)
	elapsed := time.Since(start)
	if err != nil {
		return measurement{}, err
	}
	if n != len(batch) {
		return measurement{}, fmt.Errorf("river insert: %d of %d jobs inserted", n, len(batch))
	}
	return measurement{Rate: rate(n, elapsed)}, nil
}

// Drain preloads DrainN jobs and times a client with the settings of
// River's `river bench` until every job completed.
func (b *riverBench) Drain(ctx context.Context) (measurement, error) {
	return b.timedDrain(ctx, b.cfg.DrainN, false)
}

// DedupBurst is the counterpart of esync's dedup burst: River has no
// replace-dedup (its unique jobs skip the new job instead of replacing the
// pending one), so it drains DedupN distinct jobs.
func (b *riverBench) DedupBurst(ctx context.Context) (measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	n := b.cfg.DedupN
	start := time.Now()
	if err := b.preload(ctx, n, nil); err != nil {
		return measurement{}, err
	}
	inserted := time.Since(start)
	worked, spent, err := b.work(ctx, n)
	if err != nil {
		return measurement{}, err
	}
	if err := b.checkCompleted(ctx, n, n); err != nil {
		return measurement{}, err
	}
	return measurement{Rate: rate(n, inserted+worked), Note: spent}, nil
}

// DrainAfterIdle drains DrainN jobs, runs VACUUM ANALYZE on the drained
// table, then times a client on new connections draining DrainN new jobs:
// the same idle-then-burst statistics esync's DrainAfterIdle sees.
func (b *riverBench) DrainAfterIdle(ctx context.Context) (measurement, error) {
	return b.timedDrain(ctx, b.cfg.DrainN, true)
}

// timedDrain preloads n jobs and times a client until they completed; with
// afterIdle it first drains n others and runs VACUUM ANALYZE.
func (b *riverBench) timedDrain(ctx context.Context, n int, afterIdle bool) (measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	total := n
	if afterIdle {
		if err := b.preload(ctx, n, nil); err != nil {
			return measurement{}, err
		}
		if _, _, err := b.work(ctx, n); err != nil {
			return measurement{}, err
		}
		if _, err := b.pool.Exec(ctx, "VACUUM ANALYZE river_job"); err != nil {
			return measurement{}, err
		}
		b.pool.Reset() // new connections, as for esync
		total += n
	}
	if err := b.preload(ctx, n, nil); err != nil {
		return measurement{}, err
	}
	elapsed, spent, err := b.work(ctx, n)
	if err != nil {
		return measurement{}, err
	}
	if err := b.checkCompleted(ctx, total, total); err != nil {
		return measurement{}, err
	}
	return measurement{Rate: rate(n, elapsed), Note: spent}, nil
}

// preload inserts n jobs with opts in batches of 5,000, as `river bench`
// does.
func (b *riverBench) preload(ctx context.Context, n int, opts *river.InsertOpts) error {
	return inBatches(jobs(n, opts), 5000, func(batch []river.InsertManyParams) error {
		if _, err := b.inserter.InsertManyFast(ctx, batch); err != nil {
			return fmt.Errorf("river preload: %w", err)
		}
		return nil
	})
}

// work starts a client with the settings of River's `river bench`
// (benchClient), waits for n completion events, counted through a subscription as
// `river bench` does, and stops the client. It returns the time from Start
// to the last completion, and what the process spent per job until then.
func (b *riverBench) work(ctx context.Context, n int) (time.Duration, string, error) {
	client, err := b.benchClient(b.workers)
	if err != nil {
		return 0, "", err
	}
	events, cancelSub := client.SubscribeConfig(&river.SubscribeConfig{
		ChanSize: n,
		Kinds:    []river.EventKind{river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled},
	})
	defer cancelSub()
	cost := readGoCost()
	if err := client.Start(ctx); err != nil {
		return 0, "", err
	}
	start := time.Now()
	last, err := awaitCompletions(ctx, events, n)
	spent := cost.perTask(n)
	stopCtx, stopCancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer stopCancel()
	if stopErr := client.Stop(stopCtx); err == nil {
		err = stopErr
	}
	return last.Sub(start), spent, err
}

// benchClient is a client with the settings of River's `river bench`
// (fetch cooldown 2 ms, poll interval 20 ms, 2,000 workers on the default
// queue), running workers.
func (b *riverBench) benchClient(workers *river.Workers) (*river.Client[pgx.Tx], error) {
	return river.NewClient(b.driver, &river.Config{
		FetchCooldown:     2 * time.Millisecond,
		FetchPollInterval: 20 * time.Millisecond,
		Logger:            b.logger,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 2000}},
		Workers:           workers,
	})
}

// awaitCompletions reads n completion events and returns when the last
// arrived. A failed or cancelled job is an error.
func awaitCompletions(ctx context.Context, events <-chan *river.Event, n int) (time.Time, error) {
	var last time.Time
	for done := 0; done < n; done++ {
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("river drain: %d of %d jobs completed: %w", done, n, ctx.Err())
		case ev, ok := <-events:
			if !ok {
				return last, fmt.Errorf("river drain: subscription closed after %d of %d jobs", done, n)
			}
			if ev.Kind != river.EventKindJobCompleted {
				return last, fmt.Errorf("river drain: job %d: %s", ev.Job.ID, ev.Kind)
			}
			last = time.Now()
		}
	}
	return last, nil
}

// checkCompleted verifies that the table holds total jobs of which n are
// completed.
func (b *riverBench) checkCompleted(ctx context.Context, n, total int) error {
	var completed, rows int
	err := b.pool.QueryRow(ctx,
		"SELECT count(*) FILTER (WHERE state = 'completed'), count(*) FROM river_job").Scan(&completed, &rows)
	if err != nil {
		return err
	}
	if completed != n || rows != total {
		return fmt.Errorf("river drain: %d jobs completed in %d rows, want %d in %d", completed, rows, n, total)
	}
	return nil
}
