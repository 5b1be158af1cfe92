package queue_test

import (
	"context"
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/esync/queue"
)

// A SyncManager runs the tasks of the names it has handlers for. Two tasks
// for one key collapse into the newest; RunUntilDone stops once every task
// has finished.
func ExampleNewSyncManager() {
	ctx := context.Background()
	// A migrated queue on a throwaway database (see ExampleNewTaskManager for
	// OpenPostgres and Migrate).
	driver, done := exampleDriver(ctx)
	defer done()

	tm := queue.NewTaskManager(driver)
	tm.AddTask("greet", "user:1", map[string]any{"name": "Ada"})
	tm.AddTask("greet", "user:2", map[string]any{"name": "Alan"})
	tm.AddTask("greet", "user:1", map[string]any{"name": "Ada Lovelace"}) // newer: replaces "Ada"

	sm := queue.NewSyncManager(driver)
	err := sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		var p struct{ Name string }
		if err := task.Decode(&p); err != nil {
			return queue.TaskResultPermanentFailure, queue.TaskMessage(err.Error())
		}
		fmt.Printf("hello %s (%s)\n", p.Name, task.Key)
		return queue.TaskResultSuccess, "greeted"
	}), "greet")
	if err != nil {
		log.Fatal(err)
	}
	if err := sm.RunUntilDone(ctx); err != nil {
		log.Fatal(err)
	}

	counts, err := tm.CountByState(ctx, "greet")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("done:", counts[queue.TaskDone], "superseded:", counts[queue.TaskSuperseded])
	// Output:
	// hello Ada Lovelace (user:1)
	// hello Alan (user:2)
	// done: 2 superseded: 1
}

// report is a scheduled action in the "crm" stream: it never overlaps the
// stream's tasks.
type report struct {
	once sync.Once
	ran  chan struct{}
}

func (r *report) Stream() string { return "crm" }

func (r *report) Do() error {
	r.once.Do(func() {
		fmt.Println("reconciling the CRM")
		close(r.ran)
	})
	return nil
}

// Schedule runs an action every period in its stream; with several
// processes on one queue each run happens on one of them.
func ExampleSyncManager_Schedule() {
	ctx := context.Background()
	// A migrated queue on a throwaway database (see ExampleNewTaskManager for
	// OpenPostgres and Migrate).
	driver, done := exampleDriver(ctx)
	defer done()

	sm := queue.NewSyncManager(driver)
	r := &report{ran: make(chan struct{})}
	if err := sm.Schedule(r, 100*time.Millisecond, queue.ScheduleName("crm-reconcile")); err != nil {
		log.Fatal(err)
	}
	if err := sm.Start(ctx); err != nil {
		log.Fatal(err)
	}
	<-r.ran
	if err := sm.Stop(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("stopped")
	// Output:
	// reconciling the CRM
	// stopped
}
