package queue_test

import (
	"context"
	"log"
	"os"

	"github.com/esync/queue"
)

// Behind PgBouncer in transaction mode: one option, and optionally a direct
// connection string so that idle streams still wake on NOTIFY.
func ExampleWithPooler() {
	driver, err := queue.OpenPostgres(os.Getenv("DATABASE_URL"), // the pooler
		queue.WithPooler(),
		queue.WithListenDSN(os.Getenv("DIRECT_DATABASE_URL"))) // PostgreSQL itself
	if err != nil {
		log.Fatal(err)
	}
	defer driver.Close()
	if err := driver.Migrate(context.Background()); err != nil {
		log.Fatal(err)
	}
	sm := queue.NewSyncManager(driver)
	sm.ConfigureStream("crm", queue.Exclusive()) // a lease row, safe through the pooler
	// Register handlers, then sm.Run().
}
