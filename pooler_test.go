package queue_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// Where users' PostgreSQL lives: behind a PgBouncer in transaction mode and
// over TLS. Each test here runs against both, on one server of each kind
// shared by the package's tests.

// netTarget is a way to reach PostgreSQL: the server, and the driver
// options that way needs.
type netTarget struct {
	name   string
	server func(t *testing.T) *queuetest.Server
	opts   []queue.PostgresOption
}

var netTargets = []netTarget{
	{name: "pgbouncer", server: pooledServer, opts: []queue.PostgresOption{queue.WithPooler()}},
	{name: "tls", server: tlsServer},
}

// forEachTarget runs test once per target, in parallel subtests.
func forEachTarget(t *testing.T, test func(t *testing.T, tg netTarget, s *queuetest.Server)) {
	for _, tg := range netTargets {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			test(t, tg, tg.server(t))
		})
	}
}

var (
	pooledOnce, tlsOnce sync.Once
	pooled, tlsSrv      *queuetest.Server
	pooledErr, tlsErr   error
)

// pooledServer is the package's PgBouncer-fronted server (removed when the
// test process exits).
func pooledServer(t *testing.T) *queuetest.Server {
	pooledOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		pooled, pooledErr = queuetest.StartPooled(ctx)
	})
	return serverOrSkip(t, pooled, pooledErr)
}

// tlsServer is the package's TLS-only server.
func tlsServer(t *testing.T) *queuetest.Server {
	tlsOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		tlsSrv, tlsErr = queuetest.StartTLS(ctx)
	})
	return serverOrSkip(t, tlsSrv, tlsErr)
}

func serverOrSkip(t *testing.T, s *queuetest.Server, err error) *queuetest.Server {
	t.Helper()
	if err != nil {
		if os.Getenv(queuetest.RequireEnv) != "" {
			t.Fatalf("%v (%s is set)", err, queuetest.RequireEnv)
		}
		t.Skip(err)
	}
	return s
}

// openTarget opens a driver on dsn the target's way, closed at test end.
func openTarget(t *testing.T, tg netTarget, dsn string, more ...queue.PostgresOption) *queue.PostgresDriver {
	t.Helper()
	d, err := queue.OpenPostgres(dsn, append(append([]queue.PostgresOption{}, tg.opts...), more...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// targetBundle is setup's bundle on a fresh database of the target.
func targetBundle(t *testing.T, tg netTarget, s *queuetest.Server) *testBundle {
	t.Helper()
	dsn := s.NewDSN(t)
	d := openTarget(t, tg, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return &testBundle{ctx: ctx, driver: d, db: d.DB(), tm: queue.NewTaskManager(d), dsn: dsn,
		table: pq.QuoteIdentifier(d.Schema()) + "." + pq.QuoteIdentifier(d.Table())}
}

// Claims, finishes, single and bulk inserts, inserts in a caller's
// transaction: the concurrency test of the invariants, with a smaller load.
func TestNetInvariantsUnderConcurrency(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tg netTarget, s *queuetest.Server) {
		checkInvariantsUnderConcurrency(t, targetBundle(t, tg, s), concurrencyLoad{claimers: 4, producers: 2, perProd: 800, keys: 20})
	})
}

// An Exclusive stream on three managers never runs two actions at once: one
// manager runs everything while all live; when it shuts down another takes
// over at once; when that one's database connection dies without a
// release, the third takes over, but only after the dead one's lease ran
// out.
func TestNetExclusiveStreamAcrossThreeManagers(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tg netTarget, s *queuetest.Server) {
		b := targetBundle(t, tg, s)
		const lease = time.Second
		var m meter
		var mu sync.Mutex
		ranBy := map[int]int{} // manager -> runs
		var log errorLog
		mgrs := make([]*queue.SyncManager, 3)
		drivers := make([]*queue.PostgresDriver, 3)
		for i := range mgrs {
			drivers[i] = openTarget(t, tg, b.dsn, queue.WithExclusiveLease(lease))
			// A short task lease and frequent maintenance: a task the dying
			// holder claimed just before its end is rescued soon.
			sm := queue.NewSyncManager(drivers[i], queue.WithPollInterval(50*time.Millisecond),
				queue.WithLease(time.Second), queue.WithMaintenanceInterval(200*time.Millisecond))
			sm.SetErrorHandler(log.handle)
			requireNoError(t, sm.ConfigureStream("crm", queue.Exclusive()))
			requireNoError(t, sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
				defer m.enter()()
				mu.Lock()
				ranBy[i]++
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
				return queue.TaskResultSuccess, ""
			}), "crm"))
			requireNoError(t, sm.Start(context.Background()))
			mgrs[i] = sm
		}
		stopped := make([]bool, 3)
		t.Cleanup(func() {
			for i, sm := range mgrs {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := sm.Shutdown(ctx)
				cancel()
				if err != nil && !stopped[i] {
					t.Errorf("shutdown of manager %d: %v", i, err)
				}
			}
		})
		snapshot := func() map[int]int {
			mu.Lock()
			defer mu.Unlock()
			out := map[int]int{}
			for k, v := range ranBy {
				out[k] = v
			}
			return out
		}
		// phase adds n tasks, waits until they are DONE and returns the
		// manager that ran them; tolerate lets the manager of that index run
		// up to one too (a claim in flight when it died).
		phase := func(n, done, tolerate int) (runner int) {
			t.Helper()
			before := snapshot()
			specs := make([]queue.TaskSpec, n)
			for i := range specs {
				specs[i] = queue.TaskSpec{Name: "crm", Key: fmt.Sprintf("crm:%d:%d", done, i)}
			}
			if _, err := b.tm.AddMany(b.ctx, specs); err != nil {
				t.Fatal(err)
			}
			smEventually(t, time.Minute, fmt.Sprintf("%d crm tasks DONE", done+n), func() bool {
				c, err := b.tm.CountByState(b.ctx, "crm")
				return err == nil && c[queue.TaskDone] == done+n
			})
			after := snapshot()
			runner = -1
			for i := range mgrs {
				if i == tolerate && after[i]-before[i] <= 1 {
					continue
				}
				if after[i] != before[i] {
					if runner >= 0 {
						t.Fatalf("managers %d and %d both ran tasks of the exclusive stream in one phase: %v -> %v", runner, i, before, after)
					}
					runner = i
				}
			}
			return runner
		}

		first := phase(30, 0, -1)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		requireNoError(t, mgrs[first].Shutdown(ctx))
		cancel()
		stopped[first] = true
		second := phase(30, 30, -1)
		if second == first {
			t.Fatalf("manager %d ran tasks after its shutdown", first)
		}

		// The second holder's connections die: it can neither renew nor
		// release its lease.
		drivers[second].Close()
		stopped[second] = true
		var deadUntil time.Time
		requireNoError(t, b.db.QueryRowContext(b.ctx, `SELECT expires_at FROM `+
			pq.QuoteIdentifier(b.driver.Schema())+"."+pq.QuoteIdentifier(b.driver.Table()+"_exclusive")+
			` WHERE name = 'crm'`).Scan(&deadUntil))
		// A claim it sent just before may still land and run one task,
		// under its lease, before that runs out.
		third := phase(30, 60, second)
		if third == first || third == second {
			t.Fatalf("manager %d ran tasks after it stopped (first %d, second %d)", third, first, second)
		}
		var fence int64
		var acquired time.Time
		requireNoError(t, b.db.QueryRowContext(b.ctx, `SELECT fence, acquired_at FROM `+
			pq.QuoteIdentifier(b.driver.Schema())+"."+pq.QuoteIdentifier(b.driver.Table()+"_exclusive")+
			` WHERE name = 'crm'`).Scan(&fence, &acquired))
		if acquired.Before(deadUntil) {
			t.Fatalf("the third manager took the stream at %s, before the dead holder's lease ran out at %s", acquired, deadUntil)
		}
		if fence < 3 {
			t.Fatalf("fence %d after three holders, want at least 3", fence)
		}
		if got := m.most.Load(); got != 1 {
			t.Fatalf("%d actions of the exclusive stream ran at once across three managers, want 1", got)
		}
		if got := m.total.Load(); got != 90 && got != 91 {
			t.Fatalf("%d runs for 90 tasks, want 90 (91 if the dead holder's last claim landed)", got)
		}
	})
}

// The lease itself: while one driver holds it, others get nil; Check keeps
// it; after Release it is free at once; a holder that no longer renews is
// taken over after its lease, with a larger fence, and then learns it lost.
func TestNetExclusiveLeaseTakeOver(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tg netTarget, s *queuetest.Server) {
		b := targetBundle(t, tg, s)
		const lease = 600 * time.Millisecond
		a := openTarget(t, tg, b.dsn, queue.WithExclusiveLease(lease))
		c := openTarget(t, tg, b.dsn, queue.WithExclusiveLease(lease))
		ctx := b.ctx
		la, err := a.TryExclusive(ctx, "s")
		if err != nil || la == nil {
			t.Fatalf("first take: %v, %v", la, err)
		}
		// Through renewals (several lease lengths), nobody else gets it.
		deadline := time.Now().Add(3 * lease)
		for time.Now().Before(deadline) {
			if lc, err := c.TryExclusive(ctx, "s"); err != nil || lc != nil {
				t.Fatalf("second driver took a held lease: %v, %v", lc, err)
			}
			if err := la.Check(ctx); err != nil {
				t.Fatalf("holder's Check: %v", err)
			}
			time.Sleep(lease / 6)
		}
		requireNoError(t, la.Release(ctx))
		requireNoError(t, la.Release(ctx)) // twice is fine
		lc, err := c.TryExclusive(ctx, "s")
		if err != nil || lc == nil {
			t.Fatalf("take after release: %v, %v", lc, err)
		}
		if lc.Fence() <= la.Fence() {
			t.Fatalf("fence %d after %d", lc.Fence(), la.Fence())
		}
		// c's holder dies: its database handle closes.
		c.Close()
		ld := openTarget(t, tg, b.dsn, queue.WithExclusiveLease(lease))
		var took *queue.ExclusiveLock
		smEventually(t, 20*time.Second, "a take-over after the lease", func() bool {
			took, err = ld.TryExclusive(ctx, "s")
			requireNoError(t, err)
			return took != nil
		})
		defer took.Release(ctx)
		if took.Fence() <= lc.Fence() {
			t.Fatalf("fence %d after %d", took.Fence(), lc.Fence())
		}
		if err := lc.Check(ctx); err == nil {
			t.Fatal("the dead holder's Check passed after its lease was taken over")
		}
		// A holder alive again after a take-over cannot renew: it is lost.
		stale, err := a.TryExclusive(ctx, "s")
		if err != nil || stale != nil {
			t.Fatalf("a third driver took a held lease: %v, %v", stale, err)
		}
	})
}

// A schedule on three managers runs each slot of its period once, not once
// per manager: the firing table decides, also through the pooler and over
// TLS.
func TestNetScheduleOncePerPeriod(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tg netTarget, s *queuetest.Server) {
		b := targetBundle(t, tg, s)
		const period = 400 * time.Millisecond
		var log firingLog
		for i := range 3 {
			sm := queue.NewSyncManager(openTarget(t, tg, b.dsn), queue.WithPollInterval(50*time.Millisecond))
			requireNoError(t, sm.ScheduleContext(log.action("s", i), period, queue.ScheduleName("shared")))
			smStart(t, sm)
		}
		smEventually(t, 30*time.Second, "six scheduled runs", func() bool { return len(log.of("shared")) >= 6 })
		// Each run is a different slot (a multiple of the period): a slot
		// that ran late may start close to the next one, but no slot runs
		// twice.
		seen := map[time.Time]bool{}
		for _, at := range log.of("shared") {
			if at.Truncate(period) != at {
				t.Fatalf("firing at %s is not a slot of period %s", at.Format(time.RFC3339Nano), period)
			}
			if seen[at] {
				t.Fatalf("slot %s ran twice; ran %s", at.Format(time.RFC3339Nano), fmtTimes(log.of("shared")))
			}
			seen[at] = true
		}
	})
}

// CDC: a diff emits each change once, also from concurrent runners, and
// the tasks it emits run through a manager.
func TestNetCDC(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tg netTarget, s *queuetest.Server) {
		b := targetBundle(t, tg, s)
		if _, err := b.db.ExecContext(b.ctx, `CREATE TABLE customer (id int PRIMARY KEY, name text, email text, score float8, seen timestamptz);
INSERT INTO customer SELECT g, 'c' || g, NULL, g * 1.5, now() FROM generate_series(1, 500) g`); err != nil {
			t.Fatal(err)
		}
		r, err := queue.NewCDCRunner(b.driver, "customers", queue.TrackColumns(customerSource), cdcTaskNames)
		requireNoError(t, err)
		var wg sync.WaitGroup
		var total atomic.Int64
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := r.Run(b.ctx)
				if err != nil {
					t.Error(err)
				}
				total.Add(int64(n))
			}()
		}
		wg.Wait()
		if total.Load() != 500 {
			t.Fatalf("three concurrent diffs emitted %d, want 500", total.Load())
		}
		sm := queue.NewSyncManager(b.driver)
		wrapped := r.Wrap(cdcSucceed)
		for _, n := range []string{cdcTaskNames.Create, cdcTaskNames.Update, cdcTaskNames.Delete} {
			requireNoError(t, sm.RegisterTaskHandler(wrapped, n, queue.InStream("crm")))
		}
		requireNoError(t, sm.RunUntilIdle(b.ctx))
		if _, err := b.db.ExecContext(b.ctx, `UPDATE customer SET name = 'x' WHERE id <= 10; DELETE FROM customer WHERE id > 490`); err != nil {
			t.Fatal(err)
		}
		n, err := r.Run(b.ctx)
		if err != nil || n != 20 {
			t.Fatalf("diff after changes emitted %d (%v), want 20", n, err)
		}
	})
}

// LISTEN works over a connection that reaches PostgreSQL directly: over
// TLS with the driver's own DSN, behind the pooler only with WithListenDSN;
// an insert's NOTIFY arrives there. (The manager's notifier uses this
// Listen; without it streams poll.)
func TestNetListenHearsInserts(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tg netTarget, s *queuetest.Server) {
		b := targetBundle(t, tg, s)
		d := b.driver
		if tg.name == "pgbouncer" {
			var db string
			requireNoError(t, b.db.QueryRowContext(b.ctx, `SELECT current_database()`).Scan(&db))
			d = openTarget(t, tg, b.dsn, queue.WithListenDSN(s.DirectDSN(db)))
		}
		connected := make(chan struct{}, 10)
		heard := make(chan string, 10)
		var errs errorLog
		stop, err := d.Listen(b.ctx, queue.ListenHandlers{Task: func(name string) { heard <- name }, Reconnect: func() { connected <- struct{}{} }, Error: errs.handle})
		requireNoError(t, err)
		defer stop()
		select {
		case <-connected:
		case <-time.After(30 * time.Second):
			t.Fatalf("LISTEN did not connect: %s", errs.String())
		}
		if _, err := queue.NewTaskManager(d).Add(b.ctx, "job", "k", nil); err != nil {
			t.Fatal(err)
		}
		select {
		case name := <-heard:
			if name != "job" {
				t.Fatalf("heard %q, want job", name)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no notification for the insert: %s", errs.String())
		}
	})
}

// Behind the pooler without WithListenDSN, inserts send no NOTIFY and the
// driver refuses to LISTEN (through the pooler it could not work), so the
// manager polls; tasks still run.
func TestPoolerWithoutListenDSNPolls(t *testing.T) {
	t.Parallel()
	tg := netTargets[0]
	b := targetBundle(t, tg, pooledServer(t))
	_, err := b.driver.Listen(b.ctx, queue.ListenHandlers{})
	if !errors.Is(err, queue.ErrListenUnsupported) {
		t.Fatalf("Listen behind the pooler without a direct DSN: %v, want ErrListenUnsupported", err)
	}
	var done atomic.Int64
	sm := queue.NewSyncManager(b.driver, queue.WithPollInterval(50*time.Millisecond))
	requireNoError(t, sm.RegisterTaskHandler(queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
		done.Add(1)
		return queue.TaskResultSuccess, ""
	}), "job"))
	smStart(t, sm)
	for i := range 5 {
		b.add(t, "job", fmt.Sprint("k", i), nil)
	}
	smEventually(t, 30*time.Second, "five tasks run by polling", func() bool { return done.Load() == 5 })
}

// A *sql.DB for the pooler must bind in one round trip: Migrate, a
// SyncManager's Start, a claim and a CDC run refuse one opened without
// binary_parameters=yes, and take one with it.
func TestPoolerRefusesTwoRoundTripDB(t *testing.T) {
	t.Parallel()
	dsn := pooledServer(t).NewDSN(t)
	ctx := context.Background()
	refused := func(what string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), "binary_parameters=yes") {
			t.Fatalf("%s on a two-round-trip *sql.DB behind the pooler: %v, want the binary_parameters=yes error", what, err)
		}
	}
	good, err := sql.Open("postgres", dsn+" binary_parameters=yes")
	requireNoError(t, err)
	t.Cleanup(func() { good.Close() }) // after the manager's shutdown
	gd, err := queue.NewPostgresDriverFromDB(good, queue.WithPooler())
	requireNoError(t, err)
	requireNoError(t, gd.Migrate(ctx)) // the tables exist: what follows fails for the binding alone

	plain, err := sql.Open("postgres", dsn)
	requireNoError(t, err)
	defer plain.Close()
	d, err := queue.NewPostgresDriverFromDB(plain, queue.WithPooler())
	requireNoError(t, err)
	refused("Migrate", d.Migrate(ctx))
	sm := queue.NewSyncManager(d)
	requireNoError(t, sm.RegisterTaskHandler(queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
		return queue.TaskResultSuccess, ""
	}), "job"))
	refused("SyncManager.Start", sm.Start(ctx))
	requireNoError(t, sm.Shutdown(ctx))
	_, err = d.Claim(ctx, queue.ClaimParams{Names: []string{"job"}, Limit: 1, Lease: time.Minute})
	refused("Claim", err)
	none := func(queue.CDCObjectAction) error { return nil }
	cdc, err := queue.NewCDCRunner(d, "crm", queue.ReadyHash(`SELECT 'a'::text AS object_id, 1::int8 AS hash`),
		queue.CDCCallbacks{Create: none, Update: none, Delete: none})
	requireNoError(t, err)
	_, err = cdc.Run(ctx)
	refused("CDC run", err)

	sm = queue.NewSyncManager(gd)
	requireNoError(t, sm.RegisterTaskHandler(queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
		return queue.TaskResultSuccess, ""
	}), "job"))
	smStart(t, sm)
}

// Over TLS, what fails to connect says why without the password or the
// certificate's path.
func TestTLSErrorsHideSecrets(t *testing.T) {
	t.Parallel()
	s := tlsServer(t)
	dsn := s.NewDSN(t)
	const password = "Sekr3t-pass-77"
	cases := map[string]string{
		"wrong password":   replaceParam(dsn, "password", password),
		"missing root CA":  replaceParam(dsn, "sslrootcert", "/tmp/esync-no-such-dir-41/root-secret.crt"),
		"sslmode=disable":  replaceParam(replaceParam(dsn, "sslmode", "disable"), "password", password),
		"URL and password": fmt.Sprintf("postgres://postgres:%s@localhost:%s/postgres?sslmode=verify-full&sslrootcert=%s", password, paramOf(dsn, "port"), s.RootCert),
	}
	for name, bad := range cases {
		d, err := queue.OpenPostgres(bad)
		if err == nil {
			_, err = queue.NewTaskManager(d).Count(context.Background(), queue.TaskFilter{})
			d.Close()
		}
		if err == nil {
			t.Fatalf("%s: connected", name)
		}
		for _, secret := range []string{password, "root-secret.crt", s.RootCert, paramOf(dsn, "password")} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: error %q shows %q", name, err, secret)
			}
		}
	}
}

// paramOf returns a key=value connection string's value for key.
func paramOf(dsn, key string) string {
	for _, f := range strings.Fields(dsn) {
		if k, v, ok := strings.Cut(f, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// replaceParam sets key to value in a key=value connection string.
func replaceParam(dsn, key, value string) string {
	fields := strings.Fields(dsn)
	for i, f := range fields {
		if k, _, ok := strings.Cut(f, "="); ok && k == key {
			fields[i] = key + "=" + value
			return strings.Join(fields, " ")
		}
	}
	return dsn + " " + key + "=" + value
}
