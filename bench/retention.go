package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// retentionFigures are one round of the retention measurement.
type retentionFigures struct {
	deleteRate   float64 // finished tasks deleted per second, first delete to last
	emptyAfter   time.Duration
	drainRate    float64 // tasks added (and run) per second during the drain
	finishedMax  int     // most finished tasks in the table during the drain
	finishedLast int     // finished tasks in the table at the end of the drain
	firstHalfMax int     // most finished tasks in the first half of the drain
}

// deleteCounter counts the tasks retention deletes and notes when the
// first delete began and when want had been deleted.
type deleteCounter struct {
	*queue.PostgresDriver
	want    int64
	deleted atomic.Int64
	first   atomic.Int64 // unix nanos of the first delete's start
	done    chan time.Time
}

// DeleteFinishedState deletes and counts.
func (c *deleteCounter) DeleteFinishedState(ctx context.Context, st queue.TaskState, before time.Time, limit int) (int, error) {
	c.first.CompareAndSwap(0, time.Now().UnixNano())
	n, err := c.PostgresDriver.DeleteFinishedState(ctx, st, before, limit)
	if after := c.deleted.Add(int64(n)); c.want > 0 && after >= c.want && after-int64(n) < c.want {
		c.done <- time.Now()
	}
	return n, err
}

// measureRetention times a SyncManager with default maintenance settings
// deleting RetentionN finished tasks past retention (from the start of its
// first delete to the end of the last), then runs a drain of
// RetentionDrainRate new tasks/s for RetentionDrainFor with a retention of
// 2s and samples how many finished tasks the table holds.
func measureRetention(ctx context.Context, dsn string, cfg config) (retentionFigures, error) {
	var f retentionFigures
	b, err := newEsyncBench(ctx, dsn, cfg)
	if err != nil {
		return f, err
	}
	defer b.Close()
	db := b.driver.DB()
	if err := b.addBatched(ctx, keyedSpecs("k", 0, cfg.RetentionN, 0)); err != nil {
		return f, err
	}
	if _, err := db.ExecContext(ctx, `UPDATE message_queue SET state = 'DONE', finished_at = now() - interval '2 days'`); err != nil {
		return f, err
	}
	if _, err := db.ExecContext(ctx, `VACUUM ANALYZE message_queue`); err != nil {
		return f, err
	}
	quiet := queue.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	counted := &deleteCounter{PostgresDriver: b.driver, want: int64(cfg.RetentionN), done: make(chan time.Time, 1)}
	m := queue.NewSyncManager(counted, quiet)
	m.RegisterTaskHandler(noopAction, noopTaskName)
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	start := time.Now()
	if err := m.Start(ctx); err != nil {
		return f, err
	}
	select {
	case last := <-counted.done:
		f.deleteRate = rate(cfg.RetentionN, last.Sub(time.Unix(0, counted.first.Load())))
		f.emptyAfter = last.Sub(start)
	case <-ctx.Done():
		m.Shutdown(ctx)
		return f, fmt.Errorf("retention: %d of %d deleted: %w", counted.deleted.Load(), cfg.RetentionN, ctx.Err())
	}
	if err := m.Shutdown(ctx); err != nil {
		return f, err
	}

	// The drain: producers add tasks at a steady rate while a manager runs
	// them and its maintenance deletes what finished more than 2s ago.
	counted = &deleteCounter{PostgresDriver: b.driver}
	m = queue.NewSyncManager(counted, quiet, queue.WithRetention(2*time.Second), queue.WithBatchSize(cfg.ClaimLimit))
	m.RegisterTaskHandler(noopAction, noopTaskName)
	m.ConfigureStream(noopTaskName, queue.WithConcurrency(cfg.ManagerConcurrency))
	if err := m.Start(ctx); err != nil {
		return f, err
	}
	defer m.Shutdown(context.WithoutCancel(ctx))
	const tick = 100 * time.Millisecond
	perTick := max(cfg.RetentionDrainRate*int(tick)/int(time.Second), 1)
	var wg sync.WaitGroup
	var added atomic.Int64
	prodErr := make(chan error, 1)
	drainStart := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(tick)
		defer t.Stop()
		next := cfg.RetentionN
		for time.Since(drainStart) < cfg.RetentionDrainFor {
			if _, err := b.tasks.AddMany(ctx, keyedSpecs("k", next, perTick, 0)); err != nil {
				prodErr <- err
				return
			}
			next += perTick
			added.Add(int64(perTick))
			<-t.C
		}
	}()
	sample := time.NewTicker(250 * time.Millisecond)
	defer sample.Stop()
	for time.Since(drainStart) < cfg.RetentionDrainFor {
		select {
		case err := <-prodErr:
			return f, err
		case <-ctx.Done():
			return f, ctx.Err()
		case <-sample.C:
		}
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM message_queue WHERE state IN ('DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')`).Scan(&n); err != nil {
			return f, err
		}
		f.finishedMax, f.finishedLast = max(f.finishedMax, n), n
		if time.Since(drainStart) < cfg.RetentionDrainFor/2 {
			f.firstHalfMax = max(f.firstHalfMax, n)
		}
	}
	wg.Wait()
	f.drainRate = rate(int(added.Load()), time.Since(drainStart))
	var pending int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM message_queue WHERE state IN ('READY', 'RETRY', 'IN PROGRESS')`).Scan(&pending); err != nil {
		return f, err
	}
	if pending > 2*cfg.RetentionDrainRate {
		return f, fmt.Errorf("retention drain: %d tasks pending at the end: the manager did not keep up with %d/s", pending, cfg.RetentionDrainRate)
	}
	return f, nil
}

// runRetention measures retention in rounds on fresh databases and prints
// each round and a table of medians.
func runRetention(ctx context.Context, srv *queuetest.Server, cfg config, w io.Writer) error {
	var del, drain []float64
	var maxFinished, firstHalf, last int
	for round := 1; round <= cfg.Rounds; round++ {
		var f retentionFigures
		_, err := onFreshDatabase(ctx, srv, func(dsn string) (measurement, error) {
			var err error
			f, err = measureRetention(ctx, dsn, cfg)
			return measurement{}, err
		})
		if err != nil {
			return fmt.Errorf("retention: %w", err)
		}
		fmt.Fprintf(w, "round %d  retention: %d finished tasks deleted at %s/s (all gone %s after Start, first pass at 5s); drain of %s tasks/s with 2s retention: finished rows max %d (first half %d), at the end %d\n",
			round, cfg.RetentionN, formatRate(f.deleteRate), f.emptyAfter.Round(10*time.Millisecond), formatRate(f.drainRate), f.finishedMax, f.firstHalfMax, f.finishedLast)
		del, drain = append(del, f.deleteRate), append(drain, f.drainRate)
		maxFinished, firstHalf, last = max(maxFinished, f.finishedMax), max(firstHalf, f.firstHalfMax), f.finishedLast
	}
	fmt.Fprintf(w, "\n| retention (esync only, default maintenance settings) | median |\n|---|---:|\n")
	fmt.Fprintf(w, "| %d finished tasks past retention: deleted/s | %s |\n", cfg.RetentionN, formatRate(median(del)))
	fmt.Fprintf(w, "| drain with 2s retention: tasks added and run/s | %s |\n", formatRate(median(drain)))
	fmt.Fprintf(w, "| finished rows in the table during the drain (max over rounds; first half / whole / at the end) | %d / %d / %d |\n\n", firstHalf, maxFinished, last)
	return nil
}
