package queue

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// leaseKeeper holds the lease of every run from its claim until its result
// is written: it extends them while actions run and while their results
// wait to be written, and it cancels a run whose lease is lost, or about to
// expire without an extension, before another process can take the task
// over. A cancelled run keeps its slot and key until its action returns.
type leaseKeeper struct {
	loop
	m      *SyncManager
	faults *faultReport

	mu   sync.Mutex
	held map[int64]*taskRun
}

func newLeaseKeeper(m *SyncManager) *leaseKeeper {
	k := &leaseKeeper{m: m, held: map[int64]*taskRun{}}
	k.faults = newFaultReport(m, "extend leases", 0, 0)
	k.loop = loop{name: "lease keeper", run: k.run}
	return k
}

// leaseTick is how often the keeper looks at its leases: a sixth of the
// lease, so that a lease is extended every third of it and a run whose
// extensions fail is cancelled with a quarter of its lease left.
func (k *leaseKeeper) leaseTick() time.Duration { return max(k.m.cfg.lease/6, time.Millisecond) }

// hold keeps r's lease, which its claim sent at claimed took, until drop.
func (k *leaseKeeper) hold(r *taskRun, claimed time.Time) {
	k.mu.Lock()
	r.leaseUntil = claimed.Add(k.m.cfg.lease)
	k.held[r.ct.ID] = r
	k.mu.Unlock()
}

// drop lets r's lease go: its result is written, or the lease is lost.
func (k *leaseKeeper) drop(r *taskRun) {
	k.mu.Lock()
	if k.held[r.ct.ID] == r {
		delete(k.held, r.ct.ID)
	}
	k.mu.Unlock()
}

// running returns the runs whose actions have not returned.
func (k *leaseKeeper) running() []*taskRun {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []*taskRun
	for _, r := range k.held {
		if !r.returned.Load() {
			out = append(out, r)
		}
	}
	return out
}

// run looks at the leases every tick: it cancels runs about to lose theirs
// and, every third of the lease (every tick while extensions fail), extends
// them all. An extension runs beside the ticks, so that one that hangs
// until its timeout does not delay the cancellations.
func (k *leaseKeeper) run(ctx context.Context) {
	t := time.NewTicker(k.leaseTick())
	defer t.Stop()
	var lastTry time.Time
	extending := make(chan struct{}, 1) // full while an extension runs
	defer func() { extending <- struct{}{} }()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		k.cancelExpiring()
		if !k.faults.failing() && time.Since(lastTry) < k.m.cfg.lease/3 {
			continue
		}
		select {
		case extending <- struct{}{}:
			lastTry = time.Now()
			go func() {
				k.extend(ctx)
				<-extending
			}()
		default: // the last one is still on its way
		}
	}
}

// cancelExpiring cancels the runs whose actions still run with less than a
// quarter of their lease left: their extensions have failed, and once the
// lease expires another process may take the task.
func (k *leaseKeeper) cancelExpiring() {
	now := time.Now()
	k.mu.Lock()
	var expiring []*taskRun
	for _, r := range k.held {
		if !r.returned.Load() && r.leaseUntil.Sub(now) < k.m.cfg.lease/4 {
			expiring = append(expiring, r)
		}
	}
	k.mu.Unlock()
	for _, r := range expiring {
		if r.end(errLeaseNotExtended) == errLeaseNotExtended {
			r.m.report(r.taskError(fmt.Errorf("%w; its action is cancelled", errLeaseNotExtended)))
		}
	}
}

// extend pushes every held lease a full lease ahead. A lease the queue
// says is no longer held ends its run if the action still runs; a run
// whose action has returned is left to the completer, which knows whether
// its own result was written.
func (k *leaseKeeper) extend(ctx context.Context) {
	k.mu.Lock()
	runs := make([]*taskRun, 0, len(k.held))
	leases := make([]Lease, 0, len(k.held))
	for _, r := range k.held {
		runs = append(runs, r)
		leases = append(leases, r.ct.Lease)
	}
	k.mu.Unlock()
	if len(leases) == 0 {
		return
	}
	sent := time.Now()
	// Up to half the lease: the ticks go on meanwhile, and a slow
	// extension that succeeds is worth more than one cut short.
	callCtx, cancel := context.WithTimeout(ctx, k.m.cfg.lease/2)
	lost, err := k.m.driver.ExtendLeases(callCtx, leases, k.m.cfg.lease)
	cancel()
	if err != nil {
		if ctx.Err() == nil { // not cut short by the stop
			k.faults.fail(err)
		}
		return
	}
	k.faults.ok()
	gone := make(map[int64]bool, len(lost))
	for _, id := range lost {
		gone[id] = true
	}
	var ended []*taskRun
	k.mu.Lock()
	for _, r := range runs {
		if !gone[r.ct.ID] {
			r.leaseUntil = sent.Add(k.m.cfg.lease)
		} else if k.held[r.ct.ID] == r && !r.returned.Load() {
			delete(k.held, r.ct.ID)
			ended = append(ended, r)
		}
	}
	k.mu.Unlock()
	for _, r := range ended {
		r.loseLease()
	}
	if !k.m.notifier.listening() {
		k.watchCancels(ctx, runs)
	}
}

// watchCancels asks the driver which of runs an operator asked to cancel:
// with each extension while no LISTEN connection brings those requests at
// once, and when one (re)connects, for the requests made before.
func (k *leaseKeeper) watchCancels(ctx context.Context, runs []*taskRun) {
	w, ok := k.m.driver.(CancelWatcher)
	if !ok {
		return
	}
	var ids []int64
	for _, r := range runs {
		if !r.returned.Load() {
			ids = append(ids, r.ct.ID)
		}
	}
	if len(ids) == 0 {
		return
	}
	callCtx, cancel := context.WithTimeout(ctx, k.m.cfg.lease/3)
	cancelled, err := w.CancelRequested(callCtx, ids)
	cancel()
	if err != nil {
		return // the next extension asks again
	}
	for _, id := range cancelled {
		k.cancelRequested(id)
	}
}

// watchCancelsNow is watchCancels for every run held.
func (k *leaseKeeper) watchCancelsNow(ctx context.Context) {
	k.mu.Lock()
	runs := make([]*taskRun, 0, len(k.held))
	for _, r := range k.held {
		runs = append(runs, r)
	}
	k.mu.Unlock()
	k.watchCancels(ctx, runs)
}

// cancelRequested cancels the run of task id, if this process runs it: an
// operator asked to cancel the task.
func (k *leaseKeeper) cancelRequested(id int64) {
	k.mu.Lock()
	r := k.held[id]
	k.mu.Unlock()
	if r != nil && !r.returned.Load() {
		r.end(ErrCancelRequested)
	}
}
