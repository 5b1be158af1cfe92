package main

import (
	"context"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/esync/queue"
)

// openEsyncLoad opens the esync queue at dsn for a steady load: producers
// add tasks one Add call each (AddTask with a context), a SyncManager as in
// the drains runs them.
func openEsyncLoad(ctx context.Context, dsn string, cfg config) (loadTarget, func() error, error) {
	b, err := newEsyncBench(ctx, dsn, cfg)
	if err != nil {
		return loadTarget{}, nil, err
	}
	// Every producer and the manager's loops keep their connections.
	b.driver.DB().SetMaxIdleConns(cfg.Producers + 10)
	pending := queue.TaskFilter{Name: noopTaskName, States: []queue.TaskState{queue.TaskReady, queue.TaskRetry}}
	t := loadTarget{
		run: func(ctx context.Context, rec *arrivals) (func(context.Context) error, error) {
			m, reported, err := b.newManager(b.driver, queue.TaskActionFunc(func(t queue.Task) (queue.TaskResult, queue.TaskMessage) {
				if n, ok := t.Data["num"].(float64); ok {
					rec.start(int(n))
				}
				return queue.TaskResultSuccess, ""
			}))
			if err != nil {
				return nil, err
			}
			if err := m.Start(ctx); err != nil {
				return nil, err
			}
			return func(ctx context.Context) error {
				if err := m.Shutdown(ctx); err != nil {
					return err
				}
				return reported.Err()
			}, nil
		},
		add: func(ctx context.Context, n int) error {
			_, err := b.tasks.Add(ctx, noopTaskName, "k"+strconv.Itoa(n), noopArgs{Num: n})
			return err
		},
		pending: func(ctx context.Context) (int, error) { return b.tasks.Count(ctx, pending) },
		dsn:     dsn,
		table:   b.table(),
	}
	return t, b.Close, nil
}

// recordingWorker notes when each job starts.
type recordingWorker struct {
	river.WorkerDefaults[noopArgs]
	rec *arrivals
}

// Work notes the start.
func (w *recordingWorker) Work(_ context.Context, job *river.Job[noopArgs]) error {
	w.rec.start(job.Args.Num)
	return nil
}

// openRiverLoad opens River at dsn for a steady load: producers insert
// jobs one Client.Insert each through the client that runs them, which has
// the settings of `river bench`. Its pool has room for every producer.
func openRiverLoad(ctx context.Context, dsn string, cfg config) (loadTarget, func() error, error) {
	b, err := newRiverBench(ctx, dsn, cfg, cfg.Producers+10)
	if err != nil {
		return loadTarget{}, nil, err
	}
	var client *river.Client[pgx.Tx] // set by run, before any add
	t := loadTarget{
		run: func(ctx context.Context, rec *arrivals) (func(context.Context) error, error) {
			workers := river.NewWorkers()
			river.AddWorker(workers, &recordingWorker{rec: rec})
			var err error
			if client, err = b.benchClient(workers); err != nil {
				return nil, err
			}
			if err := client.Start(ctx); err != nil {
				return nil, err
			}
			return client.Stop, nil
		},
		add: func(ctx context.Context, n int) error {
			_, err := client.Insert(ctx, noopArgs{Num: n}, nil)
			return err
		},
		pending: func(ctx context.Context) (int, error) {
			var n int
			err := b.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state IN ('available', 'retryable', 'scheduled')`).Scan(&n)
			return n, err
		},
		dsn:   dsn,
		table: "river_job",
	}
	return t, b.Close, nil
}
