package queue

import (
	"context"
	"fmt"
	"time"
)

// maintainer is the driver capability that makes maintenance happen once
// across processes, and sweeps tasks nobody handles.
type maintainer interface {
	StartScheduledRun(ctx context.Context, name, startedBy string, window time.Duration) (bool, error)
	CancelUnhandled(ctx context.Context, known []string, limit int) (int, error)
}

const maintenanceBatch = 1000

// runMaintenance rescues expired leases, cancels unhandled tasks and deletes
// old finished tasks, each maintenance interval, on one process of the
// cluster at a time.
func (m *SyncManager) runMaintenance() {
	defer m.loops.Done()
	t := time.NewTicker(m.cfg.maintenanceInterval)
	defer t.Stop()
	me := processName()
	for {
		select {
		case <-t.C:
		case <-m.stopClaiming:
			return
		}
		ctx, cancel := context.WithTimeout(m.runCtx, m.cfg.maintenanceInterval*4)
		// A run cut short by the shutdown's cancellation is no error.
		if err := m.maintain(ctx, me); err != nil && m.runCtx.Err() == nil {
			m.report(fmt.Errorf("maintenance: %w", err))
		}
		cancel()
	}
}

func (m *SyncManager) maintain(ctx context.Context, me string) error {
	mt, _ := m.driver.(maintainer)
	if mt != nil {
		ok, err := mt.StartScheduledRun(ctx, "esync:maintenance", me, m.cfg.maintenanceInterval*8/10)
		if err != nil || !ok {
			return err
		}
	}
	rescued := 0
	for {
		n, err := m.driver.RescueExpired(ctx, maintenanceBatch)
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
