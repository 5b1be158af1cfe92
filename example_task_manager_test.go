package queue_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/esync/queue"
)

// Add tasks with the original call, then look at the queue. Here queuetest
// provides a throwaway PostgreSQL; in production, pass your own connection
// string to OpenPostgres.
func ExampleNewTaskManager() {
	ctx := context.Background()
	// A throwaway database from queuetest; in production, pass your own
	// connection string to OpenPostgres.
	dsn, drop := exampleDatabase(ctx)
	defer drop()

	driver, err := queue.OpenPostgres(dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer driver.Close()
	if err := driver.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	tm := queue.NewTaskManager(driver)
	// Two updates of one customer: only the newest will run. The older one
	// is superseded as the newer one is added, so two tasks are pending.
	for _, email := range []string{"old@example.com", "new@example.com"} {
		data := map[string]interface{}{"email": email}
		if err := tm.AddTask("customerUpdate", "customer:123", data); err != nil {
			log.Fatal(err)
		}
	}
	data := map[string]interface{}{"email": "other@example.com"}
	if err := tm.AddTask("customerUpdate", "customer:456", data, queue.WithCreatedBy("crm")); err != nil {
		log.Fatal(err)
	}

	pending, err := tm.GetTaskCount("customerUpdate")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pending:", pending)

	// A worker claims one task per key: the newest for customer:123.
	claimed, err := driver.Claim(ctx, queue.ClaimParams{Names: []string{"customerUpdate"}, Limit: 10, Lease: 30 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range claimed {
		fmt.Println("claimed:", c.Key, c.Data["email"])
	}
	counts, err := tm.CountByState(ctx, "customerUpdate")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("in progress:", counts[queue.TaskInProgress], "superseded:", counts[queue.TaskSuperseded])
	// Output:
	// pending: 2
	// claimed: customer:123 new@example.com
	// claimed: customer:456 other@example.com
	// in progress: 2 superseded: 1
}

// Enqueue a task in the same transaction as the change it is about: the task
// exists if and only if the transaction commits.
func ExampleTaskManager_AddTaskTx() {
	ctx := context.Background()
	// A migrated queue on a throwaway database (see ExampleNewTaskManager for
	// OpenPostgres and Migrate).
	driver, done := exampleDriver(ctx)
	defer done()
	db := driver.DB()
	if _, err := db.ExecContext(ctx, `CREATE TABLE customers (id int PRIMARY KEY, email text)`); err != nil {
		log.Fatal(err)
	}
	tm := queue.NewTaskManager(driver)

	save := func(id int, email string, commit bool) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			log.Fatal(err)
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, `INSERT INTO customers VALUES ($1, $2)`, id, email); err != nil {
			log.Fatal(err)
		}
		key := fmt.Sprintf("customer:%d", id)
		if err := tm.AddTaskTx(ctx, tx, "customerCreate", key, map[string]any{"id": id}); err != nil {
			log.Fatal(err)
		}
		if commit {
			if err := tx.Commit(); err != nil {
				log.Fatal(err)
			}
		}
	}
	save(1, "kept@example.com", true)
	save(2, "rolled-back@example.com", false)

	tasks, err := tm.List(ctx, queue.TaskFilter{Name: "customerCreate"})
	if err != nil {
		log.Fatal(err)
	}
	for _, t := range tasks {
		fmt.Println(t.Key, t.State)
	}
	// Output:
	// customer:1 READY
}
