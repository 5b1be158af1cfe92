package queue

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// leaseKeeper holds the runs in progress. It extends their leases while
// their actions run, ends a run whose lease was lost (taken over after
// expiry), and ends them all at a hard stop.
type leaseKeeper struct {
	m       *SyncManager
	mu      sync.Mutex
	held    map[int64]*taskRun
	stopped bool // after endAll: no run is held any more
}

func newLeaseKeeper(m *SyncManager) *leaseKeeper {
	return &leaseKeeper{m: m, held: map[int64]*taskRun{}}
}

// hold keeps r's lease alive until drop; false after endAll.
func (k *leaseKeeper) hold(r *taskRun) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return false
	}
	k.held[r.ct.ID] = r
	return true
}

func (k *leaseKeeper) drop(id int64) {
	k.mu.Lock()
	delete(k.held, id)
	k.mu.Unlock()
}

// run extends every held lease each third of the lease duration.
func (k *leaseKeeper) run() {
	defer k.m.loops.Done()
	t := time.NewTicker(k.m.cfg.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			k.extend()
		case <-k.m.runCtx.Done():
			return
		}
	}
}

func (k *leaseKeeper) extend() {
	k.mu.Lock()
	leases := make([]Lease, 0, len(k.held))
	for _, r := range k.held {
		leases = append(leases, r.ct.Lease)
	}
	k.mu.Unlock()
	if len(leases) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(k.m.runCtx, k.m.cfg.lease/3)
	defer cancel()
	lost, err := k.m.driver.ExtendLeases(ctx, leases, k.m.cfg.lease)
	if err != nil {
		if k.m.runCtx.Err() == nil { // not cut short by the shutdown
			k.m.report(fmt.Errorf("extend leases: %w", err))
		}
		return
	}
	k.mu.Lock()
	var ended []*taskRun
	for _, id := range lost {
		// Finished meanwhile (dropped) or really lost: end only the latter.
		if r, ok := k.held[id]; ok {
			ended = append(ended, r)
		}
	}
	k.mu.Unlock()
	for _, r := range ended { // ending a run drops it: not under the lock
		r.end(ErrLeaseLost)
	}
}

// endAll ends every run still held, and the ones that would be held later,
// with cause: the hard stop.
func (k *leaseKeeper) endAll(cause error) {
	k.mu.Lock()
	k.stopped = true
	runs := make([]*taskRun, 0, len(k.held))
	for _, r := range k.held {
		runs = append(runs, r)
	}
	k.mu.Unlock()
	for _, r := range runs {
		r.end(cause)
	}
}
