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
)

// noopAction succeeds at once.
var noopAction = queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
	return queue.TaskResultSuccess, ""
})

// ManagerDrain preloads DrainN tasks with distinct keys and times a
// SyncManager running them with a no-op action: what a user of the library
// gets, claim loops, completer and all.
func (b *esyncBench) ManagerDrain(ctx context.Context) (measurement, error) {
	return b.managerDrain(ctx, emptyShape, b.cfg.DrainN)
}

// managerDrain fills the queue with shape, settles it (settle), adds n due
// tasks on keys of their own and times a SyncManager (runManager) until it
// has run them all.
func (b *esyncBench) managerDrain(ctx context.Context, shape esyncShape, n int) (measurement, error) {
	done, err := shape(b, ctx)
	if err == nil {
		err = settle(ctx, b.driver.DB().ExecContext, b.table())
	}
	if err != nil {
		return measurement{}, err
	}
	if _, err := b.tasks.AddMany(ctx, specs(n, 0)); err != nil {
		return measurement{}, fmt.Errorf("esync preload: %w", err)
	}
	elapsed, spent, err := b.runManager(ctx, n)
	if err != nil {
		return measurement{}, err
	}
	counts, err := b.tasks.CountByState(ctx, noopTaskName)
	if err != nil {
		return measurement{}, err
	}
	if counts[queue.TaskDone] != done+n {
		return measurement{}, fmt.Errorf("esync drain: %d DONE, want %d (states %v)", counts[queue.TaskDone], done+n, counts)
	}
	return measurement{Rate: rate(n, elapsed), Note: spent}, nil
}

// runManager starts a SyncManager (newManager) with a no-op action and
// waits until it has written n results. As for River, the time runs from
// Start to the moment the n-th result is written; the shutdown after it is
// not timed. It returns that time and what the process spent per task.
func (b *esyncBench) runManager(ctx context.Context, n int) (time.Duration, string, error) {
	counted := &finishCounter{PostgresDriver: b.driver, want: int64(n), done: make(chan time.Time, 1)}
	m, reported, err := b.newManager(counted, noopAction)
	if err != nil {
		return 0, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	start, cost := time.Now(), readGoCost()
	var elapsed time.Duration
	var spent string
	if err = m.Start(ctx); err == nil {
		select {
		case last := <-counted.done:
			elapsed, spent = last.Sub(start), cost.perTask(n)
		case <-ctx.Done():
			err = fmt.Errorf("%d of %d results written: %w", counted.finished.Load(), n, ctx.Err())
		}
		if serr := m.Shutdown(ctx); err == nil {
			err = serr
		}
	}
	if err == nil {
		err = reported.Err()
	}
	if err != nil {
		return 0, "", fmt.Errorf("esync manager: %w", err)
	}
	return elapsed, spent, nil
}

// newManager returns a quiet SyncManager over d that runs the no-op tasks
// with action, ManagerConcurrency at once, claiming up to ClaimLimit per
// round trip, and keeps the first error it reports.
func (b *esyncBench) newManager(d queue.Driver, action queue.TaskAction) (*queue.SyncManager, *firstError, error) {
	m := queue.NewSyncManager(d,
		queue.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		queue.WithBatchSize(b.cfg.ClaimLimit))
	reported := &firstError{}
	m.SetErrorHandler(reported.Keep)
	if err := m.RegisterTaskHandler(action, noopTaskName); err != nil {
		return nil, nil, err
	}
	if err := m.ConfigureStream(noopTaskName, queue.WithConcurrency(b.cfg.ManagerConcurrency)); err != nil {
		return nil, nil, err
	}
	return m, reported, nil
}

// firstError keeps the first of the errors a SyncManager reports.
type firstError struct {
	mu  sync.Mutex
	err error
}

// Keep records err unless an error was recorded before.
func (f *firstError) Keep(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

// Err is the first error recorded, or nil.
func (f *firstError) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// finishCounter reports, once, the time when want results have been written.
type finishCounter struct {
	*queue.PostgresDriver
	want     int64
	finished atomic.Int64
	done     chan time.Time
}

// Finish writes the results and counts the ones written.
func (f *finishCounter) Finish(ctx context.Context, cs []queue.Completion) ([]int64, error) {
	lost, err := f.PostgresDriver.Finish(ctx, cs)
	if err == nil {
		n := int64(len(cs) - len(lost))
		if after := f.finished.Add(n); after >= f.want && after-n < f.want {
			f.done <- time.Now()
		}
	}
	return lost, err
}
