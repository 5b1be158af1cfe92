package sqlaction_test

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"os"
	"testing"
	"time"

	"github.com/esync/queue"
	sqlaction "github.com/esync/queue/actions/sql"
	"github.com/esync/queue/queuetest"
	"github.com/lib/pq"
)

func ExampleNew() {
	action, err := sqlaction.New(unconnectedDB(),
		`UPDATE customer SET synced_at = now(), note = 'sync:done' WHERE id = :customer_id::bigint`)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(action.Query())
	fmt.Println(action.Params())
	// Output:
	// UPDATE customer SET synced_at = now(), note = 'sync:done' WHERE id = $1::bigint
	// [customer_id]
}

func ExampleAction_Do() {
	db, done := exampleDB()
	defer done()
	db.Exec(`CREATE TABLE customer (id bigint PRIMARY KEY, synced_at timestamptz)`)
	db.Exec(`INSERT INTO customer (id) VALUES (42), (43)`)

	action, err := sqlaction.New(db,
		`UPDATE customer SET synced_at = now() WHERE id = :customer_id`,
		sqlaction.WithTimeout(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(action.Do(queue.Task{Name: "customer.synced", Key: "customer:42",
		RawData: []byte(`{"customer_id": 42}`)}))
	fmt.Println(action.Do(queue.Task{Name: "customer.synced", Key: "customer:43",
		RawData: []byte(`{"id": 43}`)}))
	// Output:
	// SUCCESS 1 row affected
	// ERROR missing parameter customer_id: the task data has no field "customer_id"
}

func ExampleNewScheduled() {
	db, done := exampleDB()
	defer done()
	db.Exec(`CREATE TABLE orders (customer int, amount numeric)`)
	db.Exec(`CREATE MATERIALIZED VIEW customer_totals AS
		SELECT customer, sum(amount) AS total FROM orders GROUP BY customer`)
	db.Exec(`INSERT INTO orders VALUES (1, 10), (1, 5)`)

	refresh, err := sqlaction.NewScheduled(db, "reports", `REFRESH MATERIALIZED VIEW customer_totals`)
	if err != nil {
		log.Fatal(err)
	}
	// A SyncManager calls Do on the schedule given to Schedule(refresh, period).
	fmt.Println(refresh.Stream(), refresh.Do())

	var total string
	db.QueryRow(`SELECT total FROM customer_totals WHERE customer = 1`).Scan(&total)
	fmt.Println("total", total)
	// Output:
	// reports <nil>
	// total 15
}

func ExampleClassify() {
	fmt.Println(sqlaction.Classify(&pq.Error{Code: "40P01", Message: "deadlock detected"}))
	fmt.Println(sqlaction.Classify(&pq.Error{Code: "23505", Message: "duplicate key value"}))
	// Output:
	// RETRY
	// ERROR
}

// unconnectedDB returns a *sql.DB that is never connected: New only needs one to
// keep, and compiling the statement does not touch the database.
func unconnectedDB() *sql.DB {
	db, err := sql.Open("postgres", "host=/nonexistent")
	if err != nil {
		log.Fatal(err)
	}
	return db
}

// exampleServer is the PostgreSQL the examples that need one run against.
var exampleServer *queuetest.Server

// exampleDB gives an example a fresh database on exampleServer. The returned
// func closes and drops it.
func exampleDB() (*sql.DB, func()) {
	ctx := context.Background()
	name, dsn, err := exampleServer.CreateDatabase(ctx)
	if err != nil {
		log.Fatal(err)
	}
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		log.Fatal(err)
	}
	return db, func() {
		db.Close()
		exampleServer.DropDatabase(ctx, name)
	}
}

// databaseExamples are the examples that need exampleServer.
const databaseExamples = "^(ExampleAction_Do|ExampleNewScheduled)$"

// TestMain starts the examples' PostgreSQL. Without one the database
// examples are skipped, like the tests, unless queuetest.RequireEnv is set.
func TestMain(m *testing.M) {
	flag.Parse()
	srv, err := queuetest.Start(context.Background())
	if err != nil {
		if os.Getenv(queuetest.RequireEnv) != "" {
			fmt.Fprintf(os.Stderr, "examples: %v (%s is set)\n", err, queuetest.RequireEnv)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "examples: skipping %s: %v\n", databaseExamples, err)
		skip := databaseExamples
		if prev := flag.Lookup("test.skip").Value.String(); prev != "" {
			skip = prev + "|" + skip
		}
		flag.Set("test.skip", skip)
	}
	exampleServer = srv
	code := m.Run()
	if srv != nil {
		srv.Close()
	}
	os.Exit(code)
}
