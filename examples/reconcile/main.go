// Command reconcile runs a scheduled reconciliation: every second (a cron
// spec with seconds) it recomputes each customer's order total with one SQL
// statement. Three managers share the queue, as three processes of a
// deployment would, and each run happens on one of them only.
//
//	go run ./examples/reconcile [-for 5s] [-cron "* * * * * *"]
//
// With DATABASE_URL set it works in a database of its own that it creates on
// that server (or, when the role may not create databases, a schema of its
// own in that database), dropped at the end unless --keep; without it, on a
// throwaway PostgreSQL. It never reads or writes the user's tables.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/examples/internal/exampledb"
)

// reconcileTotals is the scheduled action: one statement that brings
// customer_total in line with the orders.
type reconcileTotals struct {
	db      *sql.DB
	process string
}

// Stream places the reconciliation in the "billing" stream.
func (r reconcileTotals) Stream() string { return "billing" }

// Do recomputes the totals that differ from the orders and records the run.
func (r reconcileTotals) Do() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `
UPDATE customer_total t
SET total = s.total, reconciled_at = now()
FROM (SELECT c.id, coalesce(sum(o.amount), 0) AS total
      FROM customer c LEFT JOIN orders o ON o.customer_id = c.id
      GROUP BY c.id) s
WHERE t.customer_id = s.id AND t.total IS DISTINCT FROM s.total`)
	if err != nil {
		return err
	}
	changed, _ := res.RowsAffected()
	if _, err := tx.ExecContext(ctx, `INSERT INTO reconcile_run (process, changed) VALUES ($1, $2)`, r.process, changed); err != nil {
		return err
	}
	return tx.Commit()
}

const schema = `
CREATE TABLE IF NOT EXISTS customer (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customer, amount numeric(12,2) NOT NULL);
CREATE TABLE IF NOT EXISTS customer_total (customer_id int PRIMARY KEY REFERENCES customer, total numeric(12,2), reconciled_at timestamptz);
CREATE TABLE IF NOT EXISTS reconcile_run (id serial PRIMARY KEY, process text NOT NULL, changed bigint NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
INSERT INTO customer SELECT g, 'customer ' || g FROM generate_series(1, 20) g ON CONFLICT DO NOTHING;
INSERT INTO customer_total (customer_id) SELECT id FROM customer ON CONFLICT DO NOTHING;`

func main() {
	runFor := flag.Duration("for", 5*time.Second, "how long to run")
	spec := flag.String("cron", "* * * * * *", "cron spec of the reconciliation (six fields: with seconds)")
	keep := flag.Bool("keep", false, "keep the example's database (or schema) at the end")
	flag.Parse()
	ctx := exampledb.SignalContext()
	exampledb.Exit(ctx, run(ctx, *runFor, *spec, *keep))
}

func run(ctx context.Context, runFor time.Duration, spec string, keep bool) (err error) {
	// A database (or schema) of its own; see package exampledb.
	place, err := exampledb.Open(ctx, "reconcile", keep, nil)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, place.Close()) }()
	db, err := place.OpenDB()
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return err
	}

	// Three managers, as three processes would run them.
	var managers []*queue.SyncManager
	for i := 1; i <= 3; i++ {
		driver, err := place.OpenDriver(ctx)
		if err != nil {
			return err
		}
		sm := queue.NewSyncManager(driver)
		sm.SetErrorHandler(func(err error) { log.Printf("process %d: %v", i, err) })
		action := reconcileTotals{db: db, process: fmt.Sprintf("process-%d", i)}
		if err := sm.ScheduleCron(action, spec, queue.ScheduleName("reconcile-totals")); err != nil {
			return err
		}
		if err := sm.Start(ctx); err != nil {
			return err
		}
		defer sm.Stop() // on an early return; a second Stop returns the first's result
		managers = append(managers, sm)
	}

	// Orders keep arriving while the reconciliation runs.
	fmt.Printf("running for %s with three managers; reconciling on %q\n", runFor, spec)
	deadline := time.Now().Add(runFor)
	for time.Now().Before(deadline) {
		if _, err := db.ExecContext(ctx, `INSERT INTO orders (customer_id, amount) VALUES ($1, $2)`,
			rand.IntN(20)+1, float64(rand.IntN(10000))/100); err != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, sm := range managers {
		if err := sm.Stop(); err != nil {
			return err
		}
	}
	// A last run by hand, so the totals below reflect every order.
	if err := (reconcileTotals{db: db, process: "final"}).Do(); err != nil {
		return err
	}

	rows, err := db.QueryContext(ctx, `SELECT process, count(*), sum(changed) FROM reconcile_run WHERE process <> 'final' GROUP BY process ORDER BY process`)
	if err != nil {
		return err
	}
	defer rows.Close()
	runs := 0
	for rows.Next() {
		var process string
		var n, changed int
		if err := rows.Scan(&process, &n, &changed); err != nil {
			return err
		}
		runs += n
		fmt.Printf("  %s ran the reconciliation %d times (%d totals corrected)\n", process, n, changed)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	var closest float64
	if err := db.QueryRowContext(ctx, `
SELECT coalesce(min(gap), 0) FROM (
  SELECT extract(epoch FROM at - lag(at) OVER (ORDER BY at)) AS gap FROM reconcile_run WHERE process <> 'final') g`).Scan(&closest); err != nil {
		return err
	}
	var wrong int
	if err := db.QueryRowContext(ctx, `
SELECT count(*) FROM customer_total t
WHERE t.total IS DISTINCT FROM (SELECT coalesce(sum(amount), 0) FROM orders o WHERE o.customer_id = t.customer_id)`).Scan(&wrong); err != nil {
		return err
	}
	fmt.Printf("%d runs in all, never two within %.2fs of each other; %d totals wrong after the final run\n", runs, closest, wrong)
	if runs == 0 || wrong != 0 || (runs > 1 && closest < 0.5) {
		return fmt.Errorf("reconciliation did not run as scheduled: %d runs, two %.2fs apart, %d wrong totals", runs, closest, wrong)
	}
	return nil
}
