// Command crmsync keeps an internal customer table in sync with a CRM over
// HTTP: esync's CDC runner diffs the table against what was last synced and
// queues create/update/delete tasks; task actions call the CRM. The program
// starts the CRM on loopback, makes real changes to the table (inserts,
// updates, deletes, and a burst of updates to one customer), prints progress
// until the CRM matches the table, then a summary.
//
// The CRM misbehaves as real ones do, and every fault is counted in the
// summary: a fraction of requests is answered 5xx, some writes are applied
// but answered 500 (a lost answer), every --hang-every-th request is never
// answered (the client gives up after --crm-timeout), and more than
// --rate-limit requests within a second, or --burst-limit within 20ms, are
// answered 429 with Retry-After.
// The actions retry all of them.
//
//	go run ./examples/crmsync            # sync, change, sync again, exit 0
//	go run ./examples/crmsync --follow   # keep changing and syncing until interrupted
//
// Ctrl-C (SIGINT) or SIGTERM, in any mode, stops the sync manager (running
// requests finish or are released back to the queue), prints the summary
// and exits 130 (143 for SIGTERM); a second Ctrl-C ends the program at once.
// Other failures exit 1.
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
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/examples/internal/exampledb"
)

// config sizes one run of the example.
type config struct {
	customers  int           // customers in the table at the start
	burst      int           // updates in a row to one customer
	timeout    time.Duration // give up when the CRM is not in sync by then
	follow     bool          // keep changing and syncing until interrupted
	faults     float64       // fraction of CRM requests answered 5xx
	lost       float64       // fraction of CRM writes applied but answered 500
	rateLimit  int           // CRM requests admitted per second; more get 429
	burstLimit int           // CRM requests admitted within 20ms; more get 429
	hangEvery  int           // every n-th CRM request is never answered
	crmTimeout time.Duration // the client gives up on a request after this
	keep       bool          // keep the example's database or schema
	quiet      bool          // no progress lines
	out        io.Writer     // where the report goes; nil means os.Stdout
}

// defaults are the sizes of `go run ./examples/crmsync`.
func defaults() config {
	return config{customers: 500, burst: 50, timeout: 2 * time.Minute, faults: 0.05, lost: 0.01,
		rateLimit: 150, burstLimit: 6, hangEvery: 100, crmTimeout: 2 * time.Second}
}

// errInterrupted is run's error when a signal stopped it.
var errInterrupted = errors.New("interrupted")

func main() {
	cfg := defaults()
	flag.IntVar(&cfg.customers, "customers", cfg.customers, "customers in the internal table at the start")
	flag.IntVar(&cfg.burst, "burst", cfg.burst, "updates in a row to one customer")
	flag.DurationVar(&cfg.timeout, "timeout", cfg.timeout, "give up when the CRM is not in sync by then")
	flag.BoolVar(&cfg.follow, "follow", false, "keep changing the table and syncing until interrupted")
	flag.Float64Var(&cfg.faults, "faults", cfg.faults, "fraction of CRM requests answered with a 5xx")
	flag.Float64Var(&cfg.lost, "lost-answers", cfg.lost, "fraction of CRM writes applied but answered 500")
	flag.IntVar(&cfg.rateLimit, "rate-limit", cfg.rateLimit, "CRM requests admitted within any second; more are answered 429 (0: no limit)")
	flag.IntVar(&cfg.burstLimit, "burst-limit", cfg.burstLimit, "CRM requests admitted within any 20ms; more are answered 429 (0: no limit)")
	flag.IntVar(&cfg.hangEvery, "hang-every", cfg.hangEvery, "every n-th CRM request is never answered (0: none)")
	flag.DurationVar(&cfg.crmTimeout, "crm-timeout", cfg.crmTimeout, "the client gives up on a CRM request after this")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the example's database (or schema) at the end")
	flag.Parse()

	ctx, cancel := context.WithCancelCause(context.Background())
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-signals
		signal.Stop(signals) // a second signal ends the program at once
		cancel(signalCause{sig})
	}()
	err := run(ctx, cfg)
	var sig signalCause
	switch {
	case errors.Is(err, errInterrupted) && errors.As(context.Cause(ctx), &sig):
		if s, ok := sig.Signal.(syscall.Signal); ok {
			os.Exit(128 + int(s))
		}
		os.Exit(130)
	case err != nil:
		log.Fatal(err)
	}
}

// signalCause is the cause of the run's context when a signal ended it.
type signalCause struct{ os.Signal }

func (s signalCause) Error() string { return "received " + s.Signal.String() }

// customerSource is what the CDC controller tracks.
const customerSource = `SELECT id AS object_id, id, name, email, tier FROM customer`

// cdcNames are the task names the CDC runner queues.
var cdcNames = queue.CDCTasks{Create: "crm.create", Update: "crm.update", Delete: "crm.delete", IncludeRow: true}

// burstKey is the task key of customer 1, the one updated in bursts.
const burstKey = "customers:1"

// report is what a run did, as its summary prints it.
type report struct {
	interrupted  bool
	customers    int // in the table at the end
	contacts     int // in the CRM at the end
	counts       map[queue.TaskState]int
	crm          CRMStats
	burstUpdates int // updates made to customer 1 in bursts
	burst        map[queue.TaskState]int
}

// run runs the example; it returns errInterrupted, after the summary,
// when ctx was cancelled.
func run(ctx context.Context, cfg config) (err error) {
	_, err = runReport(ctx, cfg)
	return err
}

// runReport is run, returning the report too.
func runReport(ctx context.Context, cfg config) (rep report, err error) {
	out := cfg.out
	if out == nil {
		out = os.Stdout
	}
	say := func(format string, args ...any) {
		if !cfg.quiet {
			fmt.Fprintf(out, format+"\n", args...)
		}
	}
	interrupted := func(err error) error {
		if ctx.Err() != nil {
			say("interrupted (%v) before the sync started", context.Cause(ctx))
			return errInterrupted
		}
		return err
	}

	// A database (or schema) of its own; see package exampledb.
	place, err := exampledb.Open(ctx, "crmsync", cfg.keep, nil)
	if err != nil {
		return rep, interrupted(err)
	}
	defer func() { err = errors.Join(err, place.Close()) }()
	driver, err := place.OpenDriver(ctx)
	if err != nil {
		return rep, interrupted(err)
	}
	db := driver.DB()
	if err := seedCustomers(ctx, db, cfg.customers); err != nil {
		return rep, interrupted(err)
	}

	crm, err := StartCRM(CRMConfig{FaultRate: cfg.faults, LostAnswerRate: cfg.lost, RateLimit: cfg.rateLimit,
		BurstLimit: cfg.burstLimit, HangEvery: cfg.hangEvery, Seed: 7})
	if err != nil {
		return rep, err
	}
	defer crm.Close()
	action, err := newCRMAction(crm.URL(), crm.Token(), cfg.crmTimeout)
	if err != nil {
		return rep, err
	}

	cdc, err := queue.NewCDCRunner(driver, "customers", queue.TrackColumns(customerSource), cdcNames)
	if err != nil {
		return rep, err
	}
	sm := queue.NewSyncManager(driver,
		queue.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	sm.SetErrorHandler(func(err error) {
		if ctx.Err() == nil {
			log.Printf("sync: %v", err)
		}
	})
	crmAction := cdc.Wrap(action)
	for _, name := range []string{cdcNames.Create, cdcNames.Update, cdcNames.Delete} {
		if err := sm.RegisterTaskHandler(crmAction, name, queue.InStream("crm"),
			queue.WithTimeout(10*time.Second),
			queue.WithRetryPolicy(queue.ExponentialBackoff{Base: 50 * time.Millisecond, Max: 2 * time.Second, Jitter: 0.2})); err != nil {
			return rep, err
		}
	}
	if err := sm.ConfigureStream("crm", queue.WithConcurrency(8)); err != nil {
		return rep, err
	}
	if err := sm.Schedule(cdc, 250*time.Millisecond); err != nil {
		return rep, err
	}
	if err := sm.Start(ctx); err != nil {
		return rep, interrupted(err)
	}
	defer sm.Stop()

	say("CRM on %s; %d customers to sync; %s", crm.URL(), cfg.customers, describeFaults(cfg))
	syncErr := syncAndChange(ctx, db, crm, cfg, &rep, say)

	// Stop the manager before counting, so the counts hold still.
	stopErr := sm.Stop()
	rep.interrupted = ctx.Err() != nil
	if rep.interrupted {
		say("interrupted (%v): the sync manager stopped; where things stand:", context.Cause(ctx))
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := summarise(sctx, queue.NewTaskManager(driver), db, crm, &rep); err != nil {
		return rep, errors.Join(syncErr, err)
	}
	printSummary(say, rep)
	switch {
	case rep.interrupted:
		return rep, errInterrupted
	case syncErr != nil:
		return rep, syncErr
	case stopErr != nil:
		return rep, stopErr
	case rep.counts[queue.TaskFailed] > 0:
		return rep, fmt.Errorf("%d tasks FAILED", rep.counts[queue.TaskFailed])
	}
	return rep, nil
}

// describeFaults says how the CRM misbehaves.
func describeFaults(cfg config) string {
	hangs, limit := "answers every request", "admits any number of requests"
	if cfg.hangEvery > 0 {
		hangs = fmt.Sprintf("leaves one request in %d unanswered (the client gives up after %s)", cfg.hangEvery, cfg.crmTimeout)
	}
	switch {
	case cfg.rateLimit > 0 && cfg.burstLimit > 0:
		limit = fmt.Sprintf("answers 429 beyond %d requests a second or %d within 20ms", cfg.rateLimit, cfg.burstLimit)
	case cfg.rateLimit > 0:
		limit = fmt.Sprintf("answers 429 beyond %d requests a second", cfg.rateLimit)
	case cfg.burstLimit > 0:
		limit = fmt.Sprintf("answers 429 beyond %d requests within 20ms", cfg.burstLimit)
	}
	return fmt.Sprintf("the CRM answers %.0f%% of requests 5xx, loses %.0f%% of its answers, %s and %s",
		100*cfg.faults, 100*cfg.lost, hangs, limit)
}

// syncAndChange waits for the initial sync, changes the table, waits for
// the changes to sync, and with --follow goes on until ctx ends.
func syncAndChange(ctx context.Context, db *sql.DB, crm *CRMServer, cfg config, rep *report, say func(string, ...any)) error {
	start := time.Now()
	if err := waitInSync(ctx, db, crm, cfg.timeout, say); err != nil {
		return err
	}
	say("initial sync done in %s", time.Since(start).Round(time.Millisecond))

	changeStart := time.Now()
	changes, err := makeChanges(ctx, db, cfg)
	rep.burstUpdates += changes.burst
	if err != nil {
		return err
	}
	say("changed the table: %s", changes)
	if err := waitInSync(ctx, db, crm, cfg.timeout, say); err != nil {
		return err
	}
	say("changes synced in %s", time.Since(changeStart).Round(time.Millisecond))

	for cfg.follow {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
		c, err := makeChanges(ctx, db, config{customers: 20, burst: 10})
		rep.burstUpdates += c.burst
		if err != nil {
			return err
		}
		say("changed the table: %s", c)
		if err := waitInSync(ctx, db, crm, cfg.timeout, say); err != nil {
			return err
		}
	}
	return nil
}

// summarise fills in the report's counts from the queue, the table and the
// CRM.
func summarise(ctx context.Context, tm *queue.TaskManager, db *sql.DB, crm *CRMServer, rep *report) error {
	var err error
	if rep.counts, err = tm.CountByState(ctx, ""); err != nil {
		return err
	}
	burstTasks, err := tm.List(ctx, queue.TaskFilter{Name: cdcNames.Update, Key: burstKey})
	if err != nil {
		return err
	}
	rep.burst = map[queue.TaskState]int{}
	for _, t := range burstTasks {
		rep.burst[t.State]++
	}
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM customer`).Scan(&rep.customers); err != nil {
		return err
	}
	rep.contacts = len(crm.Snapshot())
	rep.crm = crm.Stats()
	return nil
}

// printSummary prints the report, each saving attributed to what made it.
func printSummary(say func(string, ...any), rep report) {
	if rep.burstUpdates > 0 {
		tasks := 0
		for _, n := range rep.burst {
			tasks += n
		}
		pending := tasks - rep.burst[queue.TaskDone] - rep.burst[queue.TaskSuperseded] - rep.burst[queue.TaskFailed]
		line := fmt.Sprintf("burst: %d updates to customer 1; the CDC diff collapsed %d of them (each diff run sees only the row's latest state) into %d tasks; "+
			"the queue superseded %d of those before they ran (newest wins); %d reached the CRM",
			rep.burstUpdates, rep.burstUpdates-tasks, tasks, rep.burst[queue.TaskSuperseded], rep.burst[queue.TaskDone])
		if pending > 0 {
			line += fmt.Sprintf(", %d still pending", pending)
		}
		if rep.burst[queue.TaskFailed] > 0 {
			line += fmt.Sprintf(", %d FAILED", rep.burst[queue.TaskFailed])
		}
		say("%s", line)
	}
	c := rep.counts
	say("summary: %d customers in the table, %d contacts in the CRM; tasks %d DONE, %d SUPERSEDED (newest wins), %d FAILED, %d pending",
		rep.customers, rep.contacts, c[queue.TaskDone], c[queue.TaskSuperseded], c[queue.TaskFailed],
		c[queue.TaskReady]+c[queue.TaskRetry]+c[queue.TaskInProgress])
	say("CRM faults, each retried by the actions: %d answered 5xx, %d lost answers, %d hung (no answer; the client gave up), %d rate-limited (429)",
		rep.crm.Faults, rep.crm.LostAnswers, rep.crm.Hung, rep.crm.RateLimited)
	say("CRM requests: %s", rep.crm)
}

// seedCustomers creates the internal table with n customers. The place is
// fresh, so the table is the example's own.
func seedCustomers(ctx context.Context, db *sql.DB, n int) error {
	if _, err := db.ExecContext(ctx, `
CREATE TABLE customer (
	id integer PRIMARY KEY,
	name text NOT NULL,
	email text NOT NULL,
	tier text NOT NULL
)`); err != nil {
		return err
	}
	_, err := db.ExecContext(ctx, `
INSERT INTO customer (id, name, email, tier)
SELECT g, 'Customer ' || g, 'customer' || g || '@example.com', (ARRAY['free', 'pro', 'enterprise'])[1 + g % 3]
FROM generate_series(1, $1::int) g`, n)
	return err
}

// changeSummary counts what makeChanges did.
type changeSummary struct{ inserted, updated, deleted, burst int }

func (c changeSummary) String() string {
	return fmt.Sprintf("%d inserted, %d updated, %d deleted, %d updates in a row to customer 1",
		c.inserted, c.updated, c.deleted, c.burst)
}

// makeChanges inserts, updates and deletes customers, each in its own
// statement as an application would, and updates customer 1 many times in
// a row. Customer 1 is changed by the burst alone, so the summary can tell
// what became of the burst.
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
	for i := 0; i < n && maxID > 1; i++ {
		res, err := db.ExecContext(ctx, `UPDATE customer SET tier = 'pro', name = name || '*' WHERE id = $1`, 2+rand.IntN(maxID-1))
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
		if err := exec(`UPDATE customer SET email = $1 WHERE id = 1`, fmt.Sprintf("customer1+%d.%d@example.com", time.Now().UnixNano(), v)); err != nil {
			return c, err
		}
		c.burst++
		select { // spread over several CDC runs
		case <-ctx.Done():
			return c, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
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
			st := crm.Stats()
			say("  %d of %d customers not yet in sync (CRM so far: %d requests, %d 5xx, %d lost answers, %d hung, %d rate-limited)",
				differ, total, st.Requests, st.Faults, st.LostAnswers, st.Hung, st.RateLimited)
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
