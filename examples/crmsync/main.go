// Command crmsync keeps an internal customer table in sync with a CRM over
// HTTP: esync's CDC runner diffs the table against what was last synced and
// queues create/update/delete tasks; task actions call the CRM, whose
// occasional 5xx, 429 and lost answers are retried. The program starts the
// CRM on loopback, makes real changes to the table (inserts, updates,
// deletes, and a burst of updates to one customer that the queue collapses),
// prints progress until the CRM matches the table, then a summary.
//
//	go run ./examples/crmsync            # sync, change, sync again, exit 0
//	go run ./examples/crmsync --follow   # keep changing and syncing until interrupted
//
// It uses DATABASE_URL, or starts a throwaway PostgreSQL when that is unset.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// config sizes one run of the example.
type config struct {
	customers int           // customers in the table at the start
	burst     int           // updates in a row to one customer
	timeout   time.Duration // give up when the CRM is not in sync by then
	follow    bool          // keep changing and syncing until interrupted
	faults    float64       // fraction of CRM requests answered 5xx
	quiet     bool          // no progress lines
}

func main() {
	cfg := config{}
	flag.IntVar(&cfg.customers, "customers", 500, "customers in the internal table at the start")
	flag.IntVar(&cfg.burst, "burst", 50, "updates in a row to one customer")
	flag.DurationVar(&cfg.timeout, "timeout", 2*time.Minute, "give up when the CRM is not in sync by then")
	flag.BoolVar(&cfg.follow, "follow", false, "keep changing the table and syncing until interrupted")
	flag.Float64Var(&cfg.faults, "faults", 0.05, "fraction of CRM requests answered with a 5xx")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		log.Fatal(err)
	}
}

// customerSource is what the CDC controller tracks.
const customerSource = `SELECT id AS object_id, id, name, email, tier FROM customer`

func run(ctx context.Context, cfg config) error {
	// DATABASE_URL, or a throwaway PostgreSQL when it is unset.
	driver, closeQueue, err := queuetest.OpenDriver(ctx)
	if err != nil {
		return err
	}
	defer closeQueue()
	db := driver.DB()
	if err := seedCustomers(ctx, db, cfg.customers); err != nil {
		return err
	}

	crm, err := StartCRM(CRMConfig{FaultRate: cfg.faults, LostAnswerRate: 0.01, RateLimit: 400, Seed: 7})
	if err != nil {
		return err
	}
	defer crm.Close()
	action, err := newCRMAction(crm.URL(), crm.Token(), 5*time.Second)
	if err != nil {
		return err
	}

	names := queue.CDCTasks{Create: "crm.create", Update: "crm.update", Delete: "crm.delete", IncludeRow: true}
	cdc, err := queue.NewCDCRunner(driver, "customers", queue.TrackColumns(customerSource), names)
	if err != nil {
		return err
	}
	sm := queue.NewSyncManager(driver,
		queue.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	sm.SetErrorHandler(func(err error) { log.Printf("sync: %v", err) })
	crmAction := cdc.Wrap(action)
	for _, name := range []string{names.Create, names.Update, names.Delete} {
		if err := sm.RegisterTaskHandler(crmAction, name, queue.InStream("crm"),
			queue.WithTimeout(10*time.Second),
			queue.WithRetryPolicy(queue.ExponentialBackoff{Base: 50 * time.Millisecond, Max: 2 * time.Second, Jitter: 0.2})); err != nil {
			return err
		}
	}
	if err := sm.ConfigureStream("crm", queue.WithConcurrency(8)); err != nil {
		return err
	}
	if err := sm.Schedule(cdc, 250*time.Millisecond); err != nil {
		return err
	}
	start := time.Now()
	if err := sm.Start(ctx); err != nil {
		return err
	}
	defer sm.Stop()

	say := func(format string, args ...any) {
		if !cfg.quiet {
			fmt.Printf(format+"\n", args...)
		}
	}
	say("CRM on %s; %d customers to sync", crm.URL(), cfg.customers)
	if err := waitInSync(ctx, db, crm, cfg.timeout, say); err != nil {
		return err
	}
	say("initial sync done in %s", time.Since(start).Round(time.Millisecond))

	changeStart := time.Now()
	changes, err := makeChanges(ctx, db, cfg)
	if err != nil {
		return err
	}
	say("changed the table: %s", changes)
	if err := waitInSync(ctx, db, crm, cfg.timeout, say); err != nil {
		return err
	}
	say("changes synced in %s", time.Since(changeStart).Round(time.Millisecond))

	for cfg.follow && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
			c, err := makeChanges(ctx, db, config{customers: 20, burst: 10})
			if err != nil {
				return err
			}
			say("changed the table: %s", c)
			if err := waitInSync(ctx, db, crm, cfg.timeout, say); err != nil && ctx.Err() == nil {
				return err
			}
		}
	}

	if err := sm.Stop(); err != nil {
		return err
	}
	tm := queue.NewTaskManager(driver)
	counts, err := tm.CountByState(context.Background(), "")
	if err != nil {
		return err
	}
	burstRuns, err := tm.Count(context.Background(), queue.TaskFilter{Name: names.Update, Key: "customers:1", States: []queue.TaskState{queue.TaskDone}})
	if err != nil {
		return err
	}
	say("the burst of %d updates to customer 1 reached the CRM as %d update(s)", cfg.burst, burstRuns)
	say("summary: %d customers in the CRM; tasks %d DONE, %d SUPERSEDED (collapsed by newest-wins), %d FAILED; CRM %s",
		len(crm.Snapshot()), counts[queue.TaskDone], counts[queue.TaskSuperseded], counts[queue.TaskFailed], crm.Stats())
	if counts[queue.TaskFailed] > 0 {
		return fmt.Errorf("%d tasks FAILED", counts[queue.TaskFailed])
	}
	return nil
}

// seedCustomers creates the internal table with n customers.
func seedCustomers(ctx context.Context, db *sql.DB, n int) error {
	_, err := db.ExecContext(ctx, `
CREATE TABLE IF NOT EXISTS customer (
	id integer PRIMARY KEY,
	name text NOT NULL,
	email text NOT NULL,
	tier text NOT NULL
);
INSERT INTO customer (id, name, email, tier)
SELECT g, 'Customer ' || g, 'customer' || g || '@example.com', (ARRAY['free', 'pro', 'enterprise'])[1 + g % 3]
FROM generate_series(1, `+fmt.Sprint(n)+`) g
ON CONFLICT DO NOTHING`)
	return err
}

// changeSummary counts what makeChanges did.
type changeSummary struct{ inserted, updated, deleted, burst int }

func (c changeSummary) String() string {
	return fmt.Sprintf("%d inserted, %d updated, %d deleted, %d updates in a row to one customer",
		c.inserted, c.updated, c.deleted, c.burst)
}

// makeChanges inserts, updates and deletes customers, each in its own
// statement as an application would, and updates one customer many times in
// a row.
func makeChanges(ctx context.Context, db *sql.DB, cfg config) (changeSummary, error) {
	var c changeSummary
	exec := func(q string, args ...any) error {
		_, err := db.ExecContext(ctx, q, args...)
		return err
	}
	var maxID int
	if err := db.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM customer`).Scan(&maxID); err != nil {
		return c, err
	}
	n := max(cfg.customers/10, 3)
	for i := 1; i <= n; i++ {
		id := maxID + i
		if err := exec(`INSERT INTO customer VALUES ($1, $2, $3, 'free')`, id, fmt.Sprintf("New customer %d", id), fmt.Sprintf("new%d@example.com", id)); err != nil {
			return c, err
		}
		c.inserted++
	}
	for i := 0; i < n; i++ {
		res, err := db.ExecContext(ctx, `UPDATE customer SET tier = 'pro', name = name || '*' WHERE id = $1`, 1+rand.IntN(maxID))
		if err != nil {
			return c, err
		}
		k, _ := res.RowsAffected()
		c.updated += int(k)
	}
	for i := 0; i < n/2; i++ {
		res, err := db.ExecContext(ctx, `DELETE FROM customer WHERE id = (SELECT id FROM customer WHERE id > 1 ORDER BY random() LIMIT 1)`)
		if err != nil {
			return c, err
		}
		k, _ := res.RowsAffected()
		c.deleted += int(k)
	}
	for v := 1; v <= cfg.burst; v++ {
		if err := exec(`UPDATE customer SET email = $1 WHERE id = 1`, fmt.Sprintf("customer1+v%d@example.com", v)); err != nil {
			return c, err
		}
		c.burst++
		time.Sleep(5 * time.Millisecond) // spread over several CDC runs
	}
	return c, nil
}

// waitInSync polls until the CRM holds exactly the customers of the table,
// printing progress every second.
func waitInSync(ctx context.Context, db *sql.DB, crm *CRMServer, timeout time.Duration, say func(string, ...any)) error {
	deadline := time.Now().Add(timeout)
	lastSay := time.Now()
	for {
		differ, total, err := compare(ctx, db, crm)
		if err != nil {
			return err
		}
		if differ == 0 {
			return nil
		}
		if time.Since(lastSay) >= time.Second {
			say("  %d of %d customers not yet in sync (CRM %s)", differ, total, crm.Stats())
			lastSay = time.Now()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("CRM not in sync after %s: %d of %d customers differ", timeout, differ, total)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// compare counts the customers whose CRM contact is missing or different,
// plus contacts the table no longer has.
func compare(ctx context.Context, db *sql.DB, crm *CRMServer) (differ, total int, err error) {
	contacts := crm.Snapshot()
	rows, err := db.QueryContext(ctx, `SELECT id::text, name, email, tier FROM customer`)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var id, name, email, tier string
		if err := rows.Scan(&id, &name, &email, &tier); err != nil {
			return 0, 0, err
		}
		total++
		c, ok := contacts[id]
		if ok {
			seen++
		}
		if !ok || c.Name != name || c.Email != email || c.Tier != tier {
			differ++
		}
	}
	return differ + len(contacts) - seen, total, rows.Err()
}
