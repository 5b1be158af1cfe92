// Command quickstart adds tasks to a queue and runs them: a burst of updates
// to one customer collapses into one run (newest wins), each key runs one
// task at a time, and a flaky action is retried.
//
//	go run ./examples/quickstart
//
// With DATABASE_URL set it works in a database of its own that it creates on
// that server (or, when the role may not create databases, a schema of its
// own in that database), dropped at the end unless --keep; without it, on a
// throwaway PostgreSQL. It never reads or writes the user's tables.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/examples/internal/exampledb"
)

func main() {
	keep := flag.Bool("keep", false, "keep the example's database (or schema) at the end")
	flag.Parse()
	ctx := exampledb.SignalContext()
	exampledb.Exit(ctx, run(ctx, *keep))
}

func run(ctx context.Context, keep bool) (err error) {
	// A database (or schema) of its own; see package exampledb.
	place, err := exampledb.Open(ctx, "quickstart", keep, nil)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, place.Close()) }()
	driver, err := place.OpenDriver(ctx)
	if err != nil {
		return err
	}

	tm := queue.NewTaskManager(driver)
	// Ten customers, each updated; customer 7 updated twenty times in a row.
	for i := 1; i <= 10; i++ {
		if err := tm.AddTask("customer.sync", fmt.Sprintf("customer:%d", i), map[string]any{"name": fmt.Sprintf("Customer %d", i), "version": 1}); err != nil {
			return err
		}
	}
	for v := 2; v <= 21; v++ {
		if err := tm.AddTask("customer.sync", "customer:7", map[string]any{"name": "Customer 7", "version": v}); err != nil {
			return err
		}
	}
	fmt.Println("added 30 tasks for 10 customers (customer:7 updated 21 times)")

	var mu sync.Mutex
	synced := map[string]float64{}
	var failures atomic.Int64
	syncCustomer := queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		// The first attempt for customer:3 fails, as a flaky CRM would.
		if task.Key == "customer:3" && task.Attempt == 1 {
			failures.Add(1)
			return queue.TaskResultRetryFailure, "CRM answered 503"
		}
		mu.Lock()
		synced[task.Key] = task.Data["version"].(float64)
		mu.Unlock()
		return queue.TaskResultSuccess, "synced"
	})

	sm := queue.NewSyncManager(driver)
	if err := sm.RegisterTaskHandler(syncCustomer, "customer.sync",
		queue.WithRetryPolicy(queue.ConstantBackoff(100*time.Millisecond))); err != nil {
		return err
	}
	if err := sm.ConfigureStream("customer.sync", queue.WithConcurrency(4)); err != nil {
		return err
	}
	start := time.Now()
	if err := sm.RunUntilDone(ctx); err != nil {
		return err
	}

	keys := make([]string, 0, len(synced))
	for k := range synced {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("  %-12s synced at version %v\n", k, synced[k])
	}
	counts, err := tm.CountByState(ctx, "customer.sync")
	if err != nil {
		return err
	}
	fmt.Printf("in %s: %d DONE, %d SUPERSEDED, %d retried after a failure\n",
		time.Since(start).Round(time.Millisecond), counts[queue.TaskDone], counts[queue.TaskSuperseded], failures.Load())
	if counts[queue.TaskDone] != 10 || counts[queue.TaskSuperseded] != 20 || synced["customer:7"] != 21 || len(synced) != 10 {
		return fmt.Errorf("unexpected result: %v, synced %v", counts, synced)
	}
	return nil
}
