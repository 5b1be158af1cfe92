package queue

import (
	"context"
	"time"
)

// This file holds the sweeps maintenance runs besides rescuing leases and
// retention: cancelling tasks no process of the fleet handles, and pruning
// the process registry and the firing table.

// cancelUnhandled cancels due tasks whose name no process handles: names no
// live process of the registry handles and none has within the grace
// period.
func (m *SyncManager) cancelUnhandled(ctx context.Context) error {
	known := make([]string, 0, len(m.handlers))
	for name := range m.handlers {
		known = append(known, name)
	}
	_, err := m.driver.(ProcessRegistrar).CancelUnhandledFleet(ctx, known, m.cfg.fleet.grace, maintenanceBatch) // checked at Start
	return err
}

// pruneInterval is how often maintenance removes old firing rows and dead
// registry entries.
const pruneInterval = time.Minute

// firingHistory is how long firing rows are kept at least (the newest of
// each schedule always is).
const firingHistory = 24 * time.Hour

// prune removes dead processes' entries once they have been gone for the
// grace period (an hour at least, so ListProcesses shows recent deaths) and
// firing rows older than a day or the DONE retention, whichever is longer.
func (m *SyncManager) prune(ctx context.Context) error {
	if time.Since(m.lastPrune) < pruneInterval {
		return nil
	}
	m.lastPrune = time.Now()
	if r, ok := m.driver.(ProcessRegistrar); ok {
		if _, err := r.DeleteDeadProcesses(ctx, max(m.cfg.fleet.grace, time.Hour)); err != nil {
			return err
		}
	}
	if f, ok := m.driver.(interface {
		DeleteOldFirings(context.Context, time.Time) (int, error)
	}); ok {
		if _, err := f.DeleteOldFirings(ctx, time.Now().Add(-max(firingHistory, m.cfg.retentionFor(TaskDone)))); err != nil {
			return err
		}
	}
	return nil
}
