package queue_test

import (
	"context"
	"fmt"
	"log"

	"github.com/esync/queue"
)

// A CDC controller whose diff runs as four partitions of the objects, on
// four connections at once: a large source uses more of the database
// server's cores. Each object is emitted once, whatever the partition count.
func ExampleWithCDCPartitions() {
	ctx := context.Background()
	driver, done := exampleDriver(ctx)
	defer done()
	if _, err := driver.DB().ExecContext(ctx, `CREATE TABLE customer (id int PRIMARY KEY, name text);
INSERT INTO customer SELECT g, 'customer ' || g FROM generate_series(1, 1000) g`); err != nil {
		log.Fatal(err)
	}

	cdc, err := queue.NewCDCRunner(driver, "customers",
		queue.TrackColumns(`SELECT id AS object_id, name FROM customer`),
		queue.CDCTasks{Create: "crm.create", Update: "crm.update", Delete: "crm.delete"},
		queue.WithCDCPartitions(4))
	if err != nil {
		log.Fatal(err)
	}
	n, err := cdc.Run(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("first run emitted", n)
	n, err = cdc.Run(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("second run emitted", n)
	// Output:
	// first run emitted 1000
	// second run emitted 0
}
