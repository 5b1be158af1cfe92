package queue

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// leaseKeeper extends the leases of running tasks while their actions run,
// and cancels an action whose lease was lost (taken over after expiry).
type leaseKeeper struct {
	m    *SyncManager
	mu   sync.Mutex
	held map[int64]heldLease
}

type heldLease struct {
	lease  Lease
	cancel context.CancelCauseFunc
}

func newLeaseKeeper(m *SyncManager) *leaseKeeper {
	return &leaseKeeper{m: m, held: map[int64]heldLease{}}
}

func (k *leaseKeeper) hold(l Lease, cancel context.CancelCauseFunc) {
	k.mu.Lock()
	k.held[l.TaskID] = heldLease{l, cancel}
	k.mu.Unlock()
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
	for _, h := range k.held {
		leases = append(leases, h.lease)
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
	defer k.mu.Unlock()
	for _, id := range lost {
		// Finished meanwhile (dropped) or really lost: cancel only the latter.
		if h, ok := k.held[id]; ok {
			h.cancel(ErrLeaseLost)
		}
	}
}
