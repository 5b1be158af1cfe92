package queue_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"time"

	"github.com/esync/queue"
)

// faultDriver wraps a PostgresDriver and injects faults into its calls, per
// call name ("Claim", "Finish", "ExtendLeases", "RescueExpired",
// "StartScheduledRun", …): calls that fail at once, calls that hang until
// their context ends, and calls that run and then lose their reply (the
// statement committed, the caller sees a connection error). Embedding the
// PostgresDriver keeps its capabilities; the ones the manager calls
// periodically are wrapped too.
type faultDriver struct {
	*queue.PostgresDriver
	mu      sync.Mutex
	modes   map[string]faultMode
	until   time.Time // with downFor: every wrapped call fails until then
	calls   map[string]int
	entered map[string]chan struct{} // closed at the first faulty call of a name
}

type faultMode int

const (
	faultNone      faultMode = iota
	faultFail                // fail at once with errInjected
	faultHang                // block until the call's context ends
	faultLoseReply           // run the call, then report a lost connection
	faultLoseOnce            // faultLoseReply once, then faultNone
)

// errInjected is what failing calls return: a lost connection, as lib/pq
// reports it.
var errInjected = errors.New("injected fault: driver: bad connection")

func newFaultDriver(d *queue.PostgresDriver) *faultDriver {
	return &faultDriver{PostgresDriver: d, modes: map[string]faultMode{}, calls: map[string]int{}, entered: map[string]chan struct{}{}}
}

// set gives the calls named the mode.
func (f *faultDriver) set(mode faultMode, names ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range names {
		f.modes[n] = mode
	}
}

// downFor makes every wrapped call fail for d from now: the database is
// unreachable.
func (f *faultDriver) downFor(d time.Duration) {
	f.mu.Lock()
	f.until = time.Now().Add(d)
	f.mu.Unlock()
}

// up ends a downFor early.
func (f *faultDriver) up() {
	f.mu.Lock()
	f.until = time.Time{}
	f.mu.Unlock()
}

// faulted returns a channel closed at the first faulty call of name.
func (f *faultDriver) faulted(name string) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch, ok := f.entered[name]
	if !ok {
		ch = make(chan struct{})
		f.entered[name] = ch
	}
	return ch
}

// count reports how many calls of name were made.
func (f *faultDriver) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

// call runs real under the fault set for name.
func (f *faultDriver) call(ctx context.Context, name string, real func() error) error {
	f.mu.Lock()
	f.calls[name]++
	mode := f.modes[name]
	if time.Now().Before(f.until) {
		mode = faultFail
	}
	if mode == faultLoseOnce {
		f.modes[name] = faultNone
	}
	if mode != faultNone {
		ch, ok := f.entered[name]
		if !ok {
			ch = make(chan struct{})
			f.entered[name] = ch
		}
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
	f.mu.Unlock()
	switch mode {
	case faultFail:
		return errInjected
	case faultHang:
		<-ctx.Done()
		return ctx.Err()
	case faultLoseReply, faultLoseOnce:
		if err := real(); err != nil {
			return err
		}
		return errInjected
	}
	return real()
}

func (f *faultDriver) AddTasks(ctx context.Context, tx *sql.Tx, tasks []queue.NewTask) (ids []int64, err error) {
	err = f.call(ctx, "AddTasks", func() (err error) { ids, err = f.PostgresDriver.AddTasks(ctx, tx, tasks); return })
	return ids, err
}

func (f *faultDriver) Claim(ctx context.Context, p queue.ClaimParams) (got []queue.ClaimedTask, err error) {
	err = f.call(ctx, "Claim", func() (err error) { got, err = f.PostgresDriver.Claim(ctx, p); return })
	if err != nil {
		return nil, err
	}
	return got, nil
}

func (f *faultDriver) Finish(ctx context.Context, cs []queue.Completion) (lost []int64, err error) {
	err = f.call(ctx, "Finish", func() (err error) { lost, err = f.PostgresDriver.Finish(ctx, cs); return })
	return lost, err
}

func (f *faultDriver) ExtendLeases(ctx context.Context, ls []queue.Lease, d time.Duration) (lost []int64, err error) {
	err = f.call(ctx, "ExtendLeases", func() (err error) { lost, err = f.PostgresDriver.ExtendLeases(ctx, ls, d); return })
	return lost, err
}

func (f *faultDriver) RescueExpired(ctx context.Context, p queue.RescueParams) (n int, err error) {
	err = f.call(ctx, "RescueExpired", func() (err error) { n, err = f.PostgresDriver.RescueExpired(ctx, p); return })
	return n, err
}

func (f *faultDriver) DeleteFinished(ctx context.Context, before time.Time, limit int) (n int, err error) {
	err = f.call(ctx, "DeleteFinished", func() (err error) { n, err = f.PostgresDriver.DeleteFinished(ctx, before, limit); return })
	return n, err
}

func (f *faultDriver) StartScheduledRun(ctx context.Context, name, by string, window time.Duration) (ok bool, err error) {
	err = f.call(ctx, "StartScheduledRun", func() (err error) { ok, err = f.PostgresDriver.StartScheduledRun(ctx, name, by, window); return })
	return ok, err
}

func (f *faultDriver) CancelUnhandled(ctx context.Context, known []string, limit int) (n int, err error) {
	err = f.call(ctx, "CancelUnhandled", func() (err error) { n, err = f.PostgresDriver.CancelUnhandled(ctx, known, limit); return })
	return n, err
}
