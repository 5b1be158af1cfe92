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
// gets, claim loops, completer and all. The stream runs ManagerConcurrency
// tasks at once and claims up to ClaimLimit per round trip. As for River,
// the time runs from Start to the moment the last result is written; the
// shutdown after it is not timed.
func (b *esyncBench) ManagerDrain(ctx context.Context) (measurement, error) {
	n := b.cfg.DrainN
	if _, err := b.tasks.AddMany(ctx, specs(n, 0)); err != nil {
		return measurement{}, fmt.Errorf("esync preload: %w", err)
	}
	counted := &finishCounter{PostgresDriver: b.driver, want: int64(n), done: make(chan time.Time, 1)}
	m := queue.NewSyncManager(counted,
		queue.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		queue.WithBatchSize(b.cfg.ClaimLimit))
	var (
		mu     sync.Mutex
		runErr error // the first error the manager reported
	)
	m.SetErrorHandler(func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if runErr == nil {
			runErr = err
		}
	})
	if err := m.RegisterTaskHandler(noopAction, noopTaskName); err != nil {
		return measurement{}, err
	}
	if err := m.ConfigureStream(noopTaskName, queue.WithConcurrency(b.cfg.ManagerConcurrency)); err != nil {
		return measurement{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	start, cost := time.Now(), readGoCost()
	err := m.Start(ctx)
	var elapsed time.Duration
	var spent string
	if err == nil {
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
	mu.Lock()
	if err == nil {
		err = runErr
	}
	mu.Unlock()
	if err != nil {
		return measurement{}, fmt.Errorf("esync manager: %w", err)
	}
	if err := b.checkDrained(ctx, n, 0); err != nil {
		return measurement{}, err
	}
	return measurement{Rate: rate(n, elapsed), Note: spent}, nil
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
