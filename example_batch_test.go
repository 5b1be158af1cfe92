package queue_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/esync/queue"
)

// A batch action takes up to maxSize tasks of its name in one call (a
// CRM's bulk endpoint) and answers for each; every task keeps its own
// result, retries and lease. A stream's rate limit counts calls.
func ExampleSyncManager_RegisterBatchHandler() {
	ctx := context.Background()
	// A migrated queue on a throwaway database (see ExampleNewTaskManager for
	// OpenPostgres and Migrate).
	driver, done := exampleDriver(ctx)
	defer done()

	tm := queue.NewTaskManager(driver)
	for i := 1; i <= 5; i++ {
		tm.AddTask("crm.upsert", fmt.Sprintf("customer:%d", i), map[string]any{"id": i})
	}

	sm := queue.NewSyncManager(driver)
	// One call at a time, at most 10 calls a second across every process.
	sm.ConfigureStream("crm", queue.WithRateLimit(10, time.Second))
	err := sm.RegisterBatchHandler(queue.BatchActionFunc(func(ctx context.Context, tasks []queue.Task) []queue.BatchResult {
		fmt.Println("one call with", len(tasks), "records")
		results := make([]queue.BatchResult, len(tasks))
		for i, task := range tasks {
			if task.Key == "customer:3" {
				results[i] = queue.BatchResult{Result: queue.TaskResultPermanentFailure, Message: "rejected: no email"}
				continue
			}
			results[i] = queue.BatchResult{Result: queue.TaskResultSuccess}
		}
		return results
	}), "crm.upsert", 100, queue.InStream("crm"))
	if err != nil {
		log.Fatal(err)
	}
	if err := sm.RunUntilDone(ctx); err != nil {
		log.Fatal(err)
	}

	counts, err := tm.CountByState(ctx, "crm.upsert")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("done:", counts[queue.TaskDone], "failed:", counts[queue.TaskFailed])
	// Output:
	// one call with 5 records
	// done: 4 failed: 1
}
