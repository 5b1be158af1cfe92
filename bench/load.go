package main

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/esync/queue/queuetest"
)

// A steady load: producers add single tasks at a set rate while the queue's
// runner (a SyncManager, a River client) runs them, in phases of their own
// rate and length. The mixed workload is one phase of it; the pinned-xmin
// run is five.

// arrivals records when each task of a steady load is added and, as it
// starts, how long it waited: insert→start as runLatency times it, for
// tasks that arrive while others run. It splits the wait in two: the add
// call itself (its commit included), and from the add's return to the
// start (the runner's part).
type arrivals struct {
	mu     sync.Mutex
	tasks  map[int]*arrival // tasks added and not both returned and started
	waits  latencies        // insert→start of the tasks started since the last take
	adds   latencies        // add calls that returned since the last take
	runner latencies        // add's return→start, of the tasks started since the last take
}

// arrival is one task's times.
type arrival struct {
	added, returned time.Time // zero until they happen
	started         bool
}

func newArrivals() *arrivals { return &arrivals{tasks: map[int]*arrival{}} }

// add notes that task n is added now (just before its insert).
func (a *arrivals) add(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tasks[n] = &arrival{added: time.Now()}
}

// addReturned notes that the add of task n returned now. The task may
// have started already (the runner saw its commit before the producer).
func (a *arrivals) addReturned(n int) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if t, ok := a.tasks[n]; ok {
		a.adds = append(a.adds, now.Sub(t.added))
		t.returned = now
		if t.started {
			a.runner = append(a.runner, 0)
			delete(a.tasks, n)
		}
	}
}

// start notes that task n starts now. A second run of a task (after a
// lost lease) is not counted again.
func (a *arrivals) start(n int) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.tasks[n]
	if !ok || t.started {
		return
	}
	t.started = true
	a.waits = append(a.waits, now.Sub(t.added))
	if !t.returned.IsZero() {
		a.runner = append(a.runner, now.Sub(t.returned))
		delete(a.tasks, n)
	}
}

// take returns the waits of the tasks started since the last take, the
// add calls returned since then, and the runner's part of the waits.
func (a *arrivals) take() (waits, adds, runner latencies) {
	a.mu.Lock()
	defer a.mu.Unlock()
	waits, adds, runner = a.waits, a.adds, a.runner
	a.waits, a.adds, a.runner = nil, nil, nil
	return waits, adds, runner
}

// phase is one stretch of a steady load.
type phase struct {
	name    string
	rate    int // tasks added per second
	length  time.Duration
	pinXmin bool // a transaction that took a transaction id stays open meanwhile
}

// phaseFigures are what one phase measured.
type phaseFigures struct {
	added, ran float64   // tasks per second added, and started
	waits      latencies // insert→start of the tasks that started during the phase
	adds       latencies // the add calls of the phase, commit included
	runner     latencies // add's return→start of the tasks that started during the phase
	backlog    int       // tasks waiting to start at the phase's end
	deadTuples int64     // n_dead_tup of the queue table at the phase's end
	tableBytes int64     // pg_total_relation_size of the queue table then
}

// loadTarget is one queue under a steady load.
type loadTarget struct {
	// run starts the queue's runner, which calls rec.start as each task
	// starts; the function it returns stops the runner.
	run     func(ctx context.Context, rec *arrivals) (stop func(context.Context) error, err error)
	add     func(ctx context.Context, n int) error // adds task n alone, distinct key
	pending func(ctx context.Context) (int, error) // tasks waiting to start
	dsn     string                                 // the queue's database
	table   string                                 // the queue table, quoted
}

// loadSide is esync or River under a steady load.
type loadSide struct {
	name string
	does string // how it adds and runs the tasks
	open func(ctx context.Context, dsn string, cfg config) (loadTarget, func() error, error)
}

// loadSides are the two sides measured under a steady load.
var loadSides = []loadSide{
	{"esync", "TaskManager.Add, one task a call; SyncManager as in the drains", openEsyncLoad},
	{"River", "Client.Insert, one job a call; client as in `river bench`", openRiverLoad},
}

// runLoad puts side through phases on a fresh database of srv, with
// Producers producers; report gets each phase's figures as it ends.
func runLoad(ctx context.Context, srv *queuetest.Server, cfg config, side loadSide, phases []phase, report func(phase, phaseFigures)) error {
	_, err := onFreshDatabase(ctx, srv, func(dsn string) (measurement, error) {
		t, closeSide, err := side.open(ctx, dsn, cfg)
		if err != nil {
			return measurement{}, err
		}
		err = runPhases(ctx, t, cfg.Producers, phases, report)
		if cerr := closeSide(); err == nil {
			err = cerr
		}
		return measurement{}, err
	})
	if err != nil {
		return fmt.Errorf("%s under load: %w", side.name, err)
	}
	return nil
}

// runPhases starts t's runner and puts it through the phases one after
// the other.
func runPhases(ctx context.Context, t loadTarget, producers int, phases []phase, report func(phase, phaseFigures)) error {
	db, err := sql.Open("postgres", t.dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	rec := newArrivals()
	stop, err := t.run(ctx, rec)
	if err != nil {
		return err
	}
	var next atomic.Int64
	for _, p := range phases {
		var f phaseFigures
		if f, err = runPhase(ctx, t, db, rec, &next, producers, p); err != nil {
			err = fmt.Errorf("phase %s: %w", p.name, err)
			break
		}
		report(p, f)
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if serr := stop(stopCtx); err == nil {
		err = serr
	}
	return err
}

// runPhase adds tasks at p's rate for p's length, with an xid held open
// meanwhile if p says so, and reads the figures at its end (before the
// xid is let go).
func runPhase(ctx context.Context, t loadTarget, db *sql.DB, rec *arrivals, next *atomic.Int64, producers int, p phase) (phaseFigures, error) {
	var f phaseFigures
	if p.pinXmin {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return f, err
		}
		defer tx.Rollback()
		var xid int64
		if err := tx.QueryRowContext(ctx, "SELECT txid_current()").Scan(&xid); err != nil {
			return f, err
		}
	}
	start := time.Now()
	added, err := produce(ctx, p.rate, p.length, producers, next, rec, t.add)
	if err != nil {
		return f, err
	}
	elapsed := time.Since(start)
	f.waits, f.adds, f.runner = rec.take()
	f.added, f.ran = rate(added, elapsed), rate(len(f.waits), elapsed)
	if f.backlog, err = t.pending(ctx); err != nil {
		return f, err
	}
	err = db.QueryRowContext(ctx, `SELECT n_dead_tup, pg_total_relation_size(relid)
FROM pg_stat_user_tables WHERE relid = $1::regclass`, t.table).Scan(&f.deadTuples, &f.tableBytes)
	return f, err
}

// produce adds tasks numbered from next at perSecond for d, through
// producers goroutines that each add one task at a time. A pacer hands out
// a number whenever the rate says one is due and a producer is free, so
// producers that fall behind lower the rate achieved instead of piling up
// work. It returns how many tasks were added.
func produce(ctx context.Context, perSecond int, d time.Duration, producers int, next *atomic.Int64, rec *arrivals, add func(context.Context, int) error) (int, error) {
	g, ctx := errgroup.WithContext(ctx)
	numbers := make(chan int)
	var added atomic.Int64
	for range producers {
		g.Go(func() error {
			for n := range numbers {
				rec.add(n)
				if err := add(ctx, n); err != nil {
					return err
				}
				rec.addReturned(n)
				added.Add(1)
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(numbers)
		pace, stop := context.WithTimeout(ctx, d)
		defer stop()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		for sent := 0; ; {
			select {
			case <-pace.Done():
				return nil
			case now := <-tick.C:
				for due := int(float64(perSecond) * now.Sub(start).Seconds()); sent < due; sent++ {
					select {
					case numbers <- int(next.Add(1)):
					case <-pace.Done():
						return nil
					}
				}
			}
		}
	})
	err := g.Wait()
	return int(added.Load()), err
}
