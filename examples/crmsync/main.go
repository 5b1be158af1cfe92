// Command crmsync keeps an internal customer table in sync with a CRM over
// HTTP: esync's CDC runner diffs the table against what was last synced and
// queues create/update/delete tasks; a batch action sends up to --batch of
// them in one call to the CRM's bulk endpoint (--batch 0: a task action
// per task, one request each), in a stream whose rate limit keeps the calls
// under --calls-per-second, spread over windows of about 20ms, and which
// holds all its calls when the CRM answers 429 with Retry-After. The
// program starts the CRM on loopback, creates a table of --rows customers,
// makes real changes to it (inserts, updates, deletes, and a burst of
// updates to one customer), prints progress until the CRM matches the
// table, then a summary: records synced, API calls made, 429s received and
// the time taken, besides every fault.
//
// The CRM misbehaves as real ones do, and every fault is counted in the
// summary: a fraction of requests is answered 5xx, some writes are applied
// but answered 500 (a lost answer), every --hang-every-th request is never
// answered (the client gives up after --crm-timeout), and more than
// --rate-limit requests within a second, or --burst-limit within 20ms, are
// answered 429 with Retry-After.
// The actions retry all of them.
//
//	go run ./examples/crmsync               # sync, change, sync again, exit 0
//	go run ./examples/crmsync --rows 100000 # the same with a bigger table
//	go run ./examples/crmsync --follow      # keep changing and syncing until interrupted
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
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/examples/internal/exampledb"
)

// config sizes one run of the example.
type config struct {
	customers  int             // customers in the table at the start (--rows)
	burst      int             // updates in a row to one customer
	batch      int             // records per bulk call; 0: a request per task
	callRate   int             // calls a second the stream may start; 0: no limit
	timeout    time.Duration   // give up when the CRM is not in sync by then
	follow     bool            // keep changing and syncing until interrupted
	faults     float64         // fraction of CRM requests answered 5xx
	lost       float64         // fraction of CRM writes applied but answered 500
	rateLimit  int             // CRM requests admitted per second; more get 429
	burstLimit int             // CRM requests admitted within 20ms; more get 429
	hangEvery  int             // every n-th CRM request is never answered
	crmTimeout time.Duration   // the client gives up on a request after this
	keep       bool            // keep the example's database or schema
	quiet      bool            // no progress lines
	out        io.Writer       // where the report goes; nil means os.Stdout
	onAdmit    func(time.Time) // told of each request the CRM admits (tests)
}

// defaults are the sizes of `go run ./examples/crmsync`.
func defaults() config {
	return config{customers: 500, burst: 50, batch: 100, callRate: 100, timeout: 2 * time.Minute, faults: 0.05, lost: 0.01,
		rateLimit: 150, burstLimit: 6, hangEvery: 100, crmTimeout: 2 * time.Second}
}

// errInterrupted is run's error when a signal stopped it.
var errInterrupted = errors.New("interrupted")

func main() {
	cfg := defaults()
	flag.IntVar(&cfg.customers, "rows", cfg.customers, "customers in the internal table at the start")
	flag.IntVar(&cfg.customers, "customers", cfg.customers, "the same as --rows")
	flag.IntVar(&cfg.batch, "batch", cfg.batch, fmt.Sprintf("records per bulk call to the CRM, at most %d (0: one request per task)", DefaultCRMMaxBatch))
	flag.IntVar(&cfg.callRate, "calls-per-second", cfg.callRate, "calls to the CRM the sync may start per second, spread over windows of about 20ms (0: no limit)")
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
	elapsed      time.Duration // from the start of the sync manager to the end of the sync
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
	if err := cfg.check(); err != nil {
		return rep, err
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
		BurstLimit: cfg.burstLimit, HangEvery: cfg.hangEvery, Seed: 7, OnAdmit: cfg.onAdmit})
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
	if err := registerCRMSync(sm, cdc, action, cfg); err != nil {
		return rep, err
	}
	if err := sm.Schedule(cdc, 250*time.Millisecond); err != nil {
		return rep, err
	}
	started := time.Now()
	if err := sm.Start(ctx); err != nil {
		return rep, interrupted(err)
	}
	defer sm.Stop()

	say("CRM on %s; %d customers to sync; %s; %s", crm.URL(), cfg.customers, describeSync(cfg), describeFaults(cfg))
	syncErr := syncAndChange(ctx, db, crm, cfg, &rep, say)
	rep.elapsed = time.Since(started)

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

// check refuses settings the example cannot run with.
func (cfg config) check() error {
	switch {
	case cfg.customers < 0:
		return fmt.Errorf("--rows %d: want 0 or more customers", cfg.customers)
	case cfg.batch < 0 || cfg.batch > DefaultCRMMaxBatch:
		return fmt.Errorf("--batch %d: the CRM takes 1 to %d records per bulk request (0: one request per task)", cfg.batch, DefaultCRMMaxBatch)
	case cfg.callRate < 0:
		return fmt.Errorf("--calls-per-second %d: want 0 (no limit) or more", cfg.callRate)
	}
	return nil
}

// registerCRMSync makes sm run the CDC tasks in the stream "crm": with
// cfg.batch, batches of up to that many through the CRM's bulk endpoint,
// else one task (and one request) at a time. The stream runs eight calls
// at once, at most cfg.callRate a second, and holds them all when the CRM
// answers 429 with Retry-After.
func registerCRMSync(sm *queue.SyncManager, cdc *queue.CDCRunnerAction, action *crmAction, cfg config) error {
	opts := []queue.TaskOption{queue.InStream("crm"), queue.WithTimeout(10 * time.Second),
		queue.WithRetryPolicy(queue.ExponentialBackoff{Base: 50 * time.Millisecond, Max: 2 * time.Second, Jitter: 0.2})}
	batch, single := cdc.WrapBatch(newCRMBatchAction(action)), cdc.Wrap(action)
	for _, name := range []string{cdcNames.Create, cdcNames.Update, cdcNames.Delete} {
		var err error
		if cfg.batch > 0 {
			err = sm.RegisterBatchHandler(batch, name, cfg.batch, opts...)
		} else {
			err = sm.RegisterTaskHandler(single, name, opts...)
		}
		if err != nil {
			return err
		}
	}
	stream := []queue.StreamOption{queue.WithConcurrency(8), queue.PauseOnRetryAfter()}
	if cfg.callRate > 0 {
		stream = append(stream, queue.WithRateLimit(rateWindow(cfg.callRate)))
	}
	return sm.ConfigureStream("crm", stream...)
}

// rateWindow splits a rate of calls a second into windows of about 20ms
// (the CRM's burst window) that each allow a whole number of calls, so
// that the calls of a second spread over it instead of all starting at its
// beginning: 100 a second is 2 per 20ms.
func rateWindow(perSecond int) (n int, per time.Duration) {
	n = max(1, perSecond/50)
	return n, time.Second * time.Duration(n) / time.Duration(perSecond)
}

// describeSync says how the sync calls the CRM.
func describeSync(cfg config) string {
	how := fmt.Sprintf("bulk calls of up to %d records", cfg.batch)
	if cfg.batch == 0 {
		how = "a request per task"
	}
	if cfg.callRate == 0 {
		return how + ", as fast as the CRM answers"
	}
	n, per := rateWindow(cfg.callRate)
	return fmt.Sprintf("%s, at most %d calls a second (%d per %s)", how, cfg.callRate, n, per)
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
	st := rep.crm
	say("sync: %d records written to the CRM (%d created, %d updated, %d deleted) in %d API calls (%d bulk), %d answered 429 (rate-limited), in %s",
		st.Writes(), st.Created, st.Updated, st.Deleted, st.Requests, st.Bulk, st.ByStatus[http.StatusTooManyRequests], rep.elapsed.Round(time.Millisecond))
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
	for i := 0; i < n/2 && maxID > 1; i++ {
		// The first customer from a random id on (an index scan, however
		// big the table), wrapping around to the lowest.
		res, err := db.ExecContext(ctx, `DELETE FROM customer WHERE id = coalesce(
	(SELECT id FROM customer WHERE id >= $1 ORDER BY id LIMIT 1),
	(SELECT id FROM customer WHERE id > 1 ORDER BY id LIMIT 1))`, 2+rand.IntN(maxID-1))
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
// printing progress every second. A comparison reads the whole table and
// the whole CRM, so it waits twice as long as the last one took (at least
// 50ms) before the next: comparing takes a third of the time at most,
// however big the table.
func waitInSync(ctx context.Context, db *sql.DB, crm *CRMServer, timeout time.Duration, say func(string, ...any)) error {
	deadline := time.Now().Add(timeout)
	lastSay := time.Now()
	for {
		began := time.Now()
		differ, total, err := compare(ctx, db, crm)
		if err != nil {
			return err
		}
		if differ == 0 {
			return nil
		}
		cost := time.Since(began)
		if time.Since(lastSay) >= time.Second {
			st := crm.Stats()
			say("  %d of %d customers not yet in sync (CRM so far: %d requests, %d bulk, %d records written; %d 5xx, %d lost answers, %d hung, %d rate-limited)",
				differ, total, st.Requests, st.Bulk, st.Writes(), st.Faults, st.LostAnswers, st.Hung, st.RateLimited)
			lastSay = time.Now()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("CRM not in sync after %s: %d of %d customers differ", timeout, differ, total)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(max(50*time.Millisecond, 2*cost)):
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
