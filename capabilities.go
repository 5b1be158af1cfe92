package queue

import (
	"context"
	"fmt"
	"time"
)

// Beyond Driver, a SyncManager uses these capabilities of its driver. A
// driver that wraps another (for metrics or tracing) must forward the ones
// the manager needs: Start fails with a clear error when one is missing,
// instead of silently running exclusive streams everywhere or every
// schedule on every process. PostgresDriver has them all.

// ExclusiveLocker takes the cluster-wide lock of an Exclusive stream. It is
// required when a stream is configured Exclusive.
type ExclusiveLocker interface {
	// TryExclusive takes the lock for name without waiting; it returns nil
	// and no error when another process holds it.
	TryExclusive(ctx context.Context, name string) (*ExclusiveLock, error)
}

// RunRecorder records runs that must happen once across the processes
// sharing a queue: scheduled actions and the maintenance pass. It is
// required.
type RunRecorder interface {
	// StartScheduledRun records that the run called name starts now and
	// reports true, unless a run of it started less than window ago on any
	// process; then it reports false and records nothing.
	StartScheduledRun(ctx context.Context, name, startedBy string, window time.Duration) (bool, error)
}

// UnhandledCanceller cancels due tasks that no handler knows. It is
// required unless WithCancelUnhandled(false).
type UnhandledCanceller interface {
	// CancelUnhandled cancels up to limit due pending tasks whose name is
	// not in known and reports how many.
	CancelUnhandled(ctx context.Context, known []string, limit int) (int, error)
}

// Listener wakes idle streams when tasks are added. It is optional: without
// it streams poll.
type Listener interface {
	// Listen calls onName with the name of every task added and
	// onReconnect each time the listening connection is established,
	// the first time included (announcements before it were not seen). It
	// returns at once, without waiting for the database; stop ends it.
	Listen(ctx context.Context, onName func(name string), onReconnect func(), onError func(error)) (stop func(), err error)
}

// checkCapabilities reports the first capability the manager's setup needs
// and the driver lacks.
func (m *SyncManager) checkCapabilities() error {
	missing := func(what, why string) error {
		return fmt.Errorf("queue: driver %T has no %s method (%s); a wrapping driver must forward it", m.driver, what, why)
	}
	if _, ok := m.driver.(RunRecorder); !ok {
		return missing("StartScheduledRun", "it runs maintenance and each scheduled run once across processes")
	}
	if _, ok := m.driver.(UnhandledCanceller); !ok && m.cfg.cancelUnhandled {
		return missing("CancelUnhandled", "it cancels tasks nobody handles; or turn that off with WithCancelUnhandled(false)")
	}
	for _, s := range m.streams {
		if _, ok := m.driver.(ExclusiveLocker); !ok && s.exclusive {
			return missing("TryExclusive", fmt.Sprintf("stream %q is Exclusive", s.name))
		}
	}
	return nil
}
