package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/esync/queue"
)

// noopAction succeeds at once.
var noopAction = queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
	return queue.TaskResultSuccess, ""
})

// ManagerDrain preloads DrainN tasks with distinct keys and times a
// SyncManager running them with a no-op action until it is idle: what a
// user of the library gets, claim loop, completer and all. The stream runs
// ManagerConcurrency tasks at once and claims up to ClaimLimit per round
// trip.
func (b *esyncBench) ManagerDrain(ctx context.Context) (measurement, error) {
	n := b.cfg.DrainN
	if _, err := b.tasks.AddMany(ctx, specs(n, 0)); err != nil {
		return measurement{}, fmt.Errorf("esync preload: %w", err)
	}
	m := queue.NewSyncManager(b.driver,
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
	start := time.Now()
	err := m.RunUntilIdle(ctx)
	elapsed := time.Since(start)
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
	return measurement{Rate: rate(n, elapsed)}, nil
}
