package queue

import (
	"context"
	"time"
)

const maintenanceBatch = 1000

// maintenance is the service that rescues expired leases, cancels unhandled
// tasks and deletes old finished tasks, each maintenance interval, on one
// process of the cluster at a time. While the database fails it backs off
// (up to four intervals) and reports the fault once, then now and then.
type maintenance struct {
	loop
	m         *SyncManager
	faults    *faultReport
	recovered time.Time // when the last streak of failures ended
}

func newMaintenance(m *SyncManager) *maintenance {
	mt := &maintenance{m: m}
	mt.faults = newFaultReport(m, "maintenance", m.cfg.maintenanceInterval, 4*m.cfg.maintenanceInterval)
	mt.loop = loop{name: "maintenance", run: mt.run}
	return mt
}

func (mt *maintenance) run(ctx context.Context) {
	me := processName()
	wait := mt.m.cfg.maintenanceInterval
	for {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		callCtx, cancel := context.WithTimeout(ctx, max(mt.m.cfg.maintenanceInterval*4, 10*time.Second))
		err := mt.pass(callCtx, me)
		cancel()
		wait = mt.m.cfg.maintenanceInterval
		switch {
		case err == nil:
			if mt.faults.failing() {
				mt.recovered = time.Now()
			}
			mt.faults.ok()
		case ctx.Err() == nil: // not cut short by the stop
			wait = mt.faults.fail(err)
		}
	}
}

// pass is one maintenance pass, if this process is the one to run it.
func (mt *maintenance) pass(ctx context.Context, me string) error {
	m := mt.m
	ok, err := m.driver.(RunRecorder).StartScheduledRun(ctx, "esync:maintenance", me, m.cfg.maintenanceInterval*8/10)
	if err != nil || !ok {
		return err
	}
	// Right after the database came back, holders get a lease to renew
	// the leases that expired while it was unreachable.
	if time.Since(mt.recovered) >= m.cfg.lease {
		rescued := 0
		for {
			n, err := m.driver.RescueExpired(ctx, RescueParams{Limit: maintenanceBatch, Backoff: m.rescueBackoff, RestartGrace: m.cfg.lease})
			if err != nil {
				return err
			}
			rescued += n
			if n < maintenanceBatch {
				break
			}
		}
		if rescued > 0 {
			m.cfg.logger.Info("esync: rescued tasks with expired leases", "count", rescued)
			m.nudgeAll()
		}
	}
	if m.cfg.cancelUnhandled {
		if err := m.cancelUnhandled(ctx); err != nil {
			return err
		}
	}
	if _, err := m.deleteFinished(ctx); err != nil {
		return err
	}
	if err := m.prune(ctx); err != nil {
		return err
	}
	return nil
}

// rescueBackoff is the wait before a rescued task runs again: its handler's
// retry policy, or the default one for names this process does not handle.
func (m *SyncManager) rescueBackoff(name string, attempt int) time.Duration {
	p := DefaultRetryPolicy
	if h := m.handlers[name]; h != nil {
		p = h.retry
	}
	return min(p.Backoff(attempt), maxDelay)
}
