package main

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
	"golang.org/x/sync/errgroup"

	"github.com/esync/queue"
)

// esyncBench is the esync side: a migrated queue in its own database.
type esyncBench struct {
	cfg    config
	dsn    string
	driver *queue.PostgresDriver
	tasks  *queue.TaskManager
}

// newEsyncBench opens and migrates the queue at dsn.
func newEsyncBench(ctx context.Context, dsn string, cfg config, opts ...queue.PostgresOption) (*esyncBench, error) {
	d, err := queue.OpenPostgres(dsn, opts...)
	if err != nil {
		return nil, err
	}
	// database/sql keeps only 2 idle connections by default; every worker
	// beyond that would reconnect on each round trip.
	d.DB().SetMaxIdleConns(cfg.Workers + 2)
	if err := d.Migrate(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("esync migrate: %w", err)
	}
	return &esyncBench{cfg: cfg, dsn: dsn, driver: d, tasks: queue.NewTaskManager(d)}, nil
}

// Close closes the database handle.
func (b *esyncBench) Close() error { return b.driver.Close() }

// table is the queue table's quoted, qualified name.
func (b *esyncBench) table() string {
	return pq.QuoteIdentifier(b.driver.Schema()) + "." + pq.QuoteIdentifier(b.driver.Table())
}

// specs builds n no-op tasks. keys is how many distinct keys they share
// (task i gets key i mod keys); 0 means every task has its own key.
func specs(n, keys int) []queue.TaskSpec { return keyedSpecs("k", 0, n, keys) }

// keyedSpecs builds n no-op tasks numbered from first, each with opts. Task
// i's key is prefix followed by i, or by i mod keys when keys > 0.
func keyedSpecs(prefix string, first, n, keys int, opts ...queue.AddOption) []queue.TaskSpec {
	out := make([]queue.TaskSpec, n)
	for i := range out {
		num := first + i
		k := num
		if keys > 0 {
			k = num % keys
		}
		out[i] = queue.TaskSpec{Name: noopTaskName, Key: prefix + strconv.Itoa(k), Data: noopArgs{Num: num}, Options: opts}
	}
	return out
}

// addBatched adds tasks with AddMany, 10,000 a call, as a user loading a
// big backlog would.
func (b *esyncBench) addBatched(ctx context.Context, tasks []queue.TaskSpec) error {
	return inBatches(tasks, 10_000, func(batch []queue.TaskSpec) error {
		if _, err := b.tasks.AddMany(ctx, batch); err != nil {
			return fmt.Errorf("esync preload: %w", err)
		}
		return nil
	})
}

// Insert times one TaskManager.AddMany of InsertN tasks with distinct keys.
func (b *esyncBench) Insert(ctx context.Context) (measurement, error) {
	batch := specs(b.cfg.InsertN, 0)
	start := time.Now()
	ids, err := b.tasks.AddMany(ctx, batch)
	elapsed := time.Since(start)
	if err != nil {
		return measurement{}, err
	}
	if len(ids) != len(batch) {
		return measurement{}, fmt.Errorf("esync insert: %d ids for %d tasks", len(ids), len(batch))
	}
	return measurement{Rate: rate(len(batch), elapsed)}, nil
}

// Drain preloads DrainN tasks with distinct keys and times the workers
// until every one is DONE.
func (b *esyncBench) Drain(ctx context.Context) (measurement, error) {
	return b.timedDrain(ctx, b.cfg.DrainN, 0, false)
}

// DrainAfterIdle drains DrainN tasks, runs VACUUM ANALYZE on the drained
// queue as autovacuum does once a queue goes idle, then times workers on new
// connections draining DrainN new tasks for the same keys. The planner's
// statistics now say that nothing is pending, as they do in production after
// a quiet spell.
func (b *esyncBench) DrainAfterIdle(ctx context.Context) (measurement, error) {
	return b.timedDrain(ctx, b.cfg.DrainN, 0, true)
}

// DedupBurst times adding DedupN tasks on DedupKeys keys (in calls of
// 5,000, as River's preload) and the workers until none is pending: each
// key runs its newest task (about once) and the rest end SUPERSEDED. The
// adding is timed too, since a task supersedes its key's pending one as it
// is added. The rate counts every task retired.
func (b *esyncBench) DedupBurst(ctx context.Context) (measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	n := b.cfg.DedupN
	start, cost := time.Now(), readGoCost()
	if err := inBatches(specs(n, b.cfg.DedupKeys), 5000, func(batch []queue.TaskSpec) error {
		_, err := b.tasks.AddMany(ctx, batch)
		return err
	}); err != nil {
		return measurement{}, fmt.Errorf("esync add: %w", err)
	}
	runs, err := b.drain(ctx)
	elapsed, spent := time.Since(start), cost.perTask(n)
	if err != nil {
		return measurement{}, err
	}
	if err := b.checkDrained(ctx, runs, n-runs); err != nil {
		return measurement{}, err
	}
	return measurement{Rate: rate(n, elapsed), Note: fmt.Sprintf("%d runs; %s", runs, spent)}, nil
}

// timedDrain preloads n tasks on keys keys (0: distinct) and times the
// workers until none is pending. With afterIdle it first drains a batch of
// the same tasks and runs VACUUM ANALYZE on the drained queue.
func (b *esyncBench) timedDrain(ctx context.Context, n, keys int, afterIdle bool) (measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	done := 0 // tasks DONE before the timed drain
	if afterIdle {
		if _, err := b.tasks.AddMany(ctx, specs(n, keys)); err != nil {
			return measurement{}, fmt.Errorf("esync preload: %w", err)
		}
		ran, err := b.drain(ctx)
		if err != nil {
			return measurement{}, err
		}
		if _, err := b.driver.DB().ExecContext(ctx, "VACUUM ANALYZE "+b.table()); err != nil {
			return measurement{}, err
		}
		// Workers that start now (a deploy, a scale-up) plan the claim
		// afresh from these statistics: drop the pooled connections and
		// their cached plans.
		b.driver.DB().SetMaxIdleConns(0)
		b.driver.DB().SetMaxIdleConns(b.cfg.Workers + 2)
		done = ran
	}
	if _, err := b.tasks.AddMany(ctx, specs(n, keys)); err != nil {
		return measurement{}, fmt.Errorf("esync preload: %w", err)
	}
	start, cost := time.Now(), readGoCost()
	runs, err := b.drain(ctx)
	elapsed, spent := time.Since(start), cost.perTask(n)
	if err != nil {
		return measurement{}, err
	}
	if err := b.checkDrained(ctx, done+runs, n-runs); err != nil {
		return measurement{}, err
	}
	m := measurement{Rate: rate(n, elapsed), Note: spent}
	if keys > 0 {
		m.Note = fmt.Sprintf("%d runs; %s", runs, spent)
	}
	return m, nil
}

// drain runs Workers goroutines, each claiming up to ClaimLimit tasks and
// finishing them DONE in one batch, until no task is pending. It returns
// how many tasks ran.
func (b *esyncBench) drain(ctx context.Context) (int, error) {
	var ran atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	for range b.cfg.Workers {
		g.Go(func() error { return b.work(ctx, &ran) })
	}
	err := g.Wait()
	return int(ran.Load()), err
}

// work is one drain worker: Claim → Finish until nothing is pending.
func (b *esyncBench) work(ctx context.Context, ran *atomic.Int64) error {
	params := queue.ClaimParams{Names: []string{noopTaskName}, Limit: b.cfg.ClaimLimit, Lease: time.Minute}
	var done []queue.Completion
	return b.finishUntilDrained(ctx, ran, func(ctx context.Context) ([]queue.Completion, error) {
		claimed, err := b.driver.Claim(ctx, params)
		done = done[:0]
		for _, c := range claimed {
			done = append(done, queue.Completion{Lease: c.Lease, State: queue.TaskDone})
		}
		return done, err
	})
}

// finishUntilDrained claims (claim returns a DONE result for each task it
// claimed) and writes the results until nothing is pending, counting the
// tasks in ran.
func (b *esyncBench) finishUntilDrained(ctx context.Context, ran *atomic.Int64, claim func(context.Context) ([]queue.Completion, error)) error {
	pending := queue.TaskFilter{Name: noopTaskName, States: []queue.TaskState{queue.TaskReady, queue.TaskRetry}}
	for {
		done, err := claim(ctx)
		if err != nil {
			return err
		}
		if len(done) == 0 {
			// Nothing claimable: either the queue is drained, or the
			// remaining keys were locked by concurrent claims.
			left, err := b.driver.CountTasks(ctx, pending)
			if err != nil {
				return err
			}
			if left == 0 {
				return nil
			}
			time.Sleep(time.Millisecond)
			continue
		}
		lost, err := b.driver.Finish(ctx, done)
		if err != nil {
			return err
		}
		if len(lost) > 0 {
			return fmt.Errorf("esync drain: %d leases lost", len(lost))
		}
		ran.Add(int64(len(done)))
	}
}

// checkDrained verifies that the queue holds exactly done DONE and
// superseded SUPERSEDED tasks, so a figure never comes from a queue that
// lost work.
func (b *esyncBench) checkDrained(ctx context.Context, done, superseded int) error {
	counts, err := b.tasks.CountByState(ctx, noopTaskName)
	if err != nil {
		return err
	}
	want := map[queue.TaskState]int{queue.TaskDone: done}
	if superseded > 0 {
		want[queue.TaskSuperseded] = superseded
	}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		return fmt.Errorf("esync drain: states %v, want %v", counts, want)
	}
	return nil
}
