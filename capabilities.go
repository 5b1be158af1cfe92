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
// sharing a queue: the maintenance pass. It is required.
type RunRecorder interface {
	// StartScheduledRun records that the run called name starts now and
	// reports true, unless a run of it started less than window ago on any
	// process; then it reports false and records nothing.
	StartScheduledRun(ctx context.Context, name, startedBy string, window time.Duration) (bool, error)
}

// Listener wakes idle streams when tasks are added, and brings the
// operator's controls (a cancelled running task, a resumed stream) to every
// process at once. It is optional: without it streams poll, and controls
// arrive with the next lease extension or poll.
type Listener interface {
	// Listen calls h's functions as announcements arrive. It returns at
	// once, without waiting for the database; stop ends it.
	Listen(ctx context.Context, h ListenHandlers) (stop func(), err error)
}

// ListenHandlers receive what a Listener hears.
type ListenHandlers struct {
	Task      func(name string) // a task of this name was added
	Control   func(msg string)  // "cancel ID", "pause STREAM" or "resume STREAM"
	Reconnect func()            // the connection was (re)established, the first time included: announcements may have been missed
	Error     func(error)       // the connection failed
}

// CancelWatcher reports which of the given running tasks an operator asked
// to cancel. Optional: the lease keeper asks it with each extension while
// no LISTEN connection brings the requests at once.
type CancelWatcher interface {
	CancelRequested(ctx context.Context, ids []int64) ([]int64, error)
}

// StreamLimiter keeps the cluster-wide limits of streams: run permits per
// window (WithRateLimit) and holding a stream after a Retry-After
// (PauseOnRetryAfter). It is required by streams configured with either.
type StreamLimiter interface {
	TakeRunPermits(ctx context.Context, stream string, n, limit int, per time.Duration) (granted int, windowEnds time.Time, err error)
	HoldStream(ctx context.Context, stream string, until time.Time) error
}

// StreamPauser pauses and resumes streams cluster-wide (PostgresDriver's
// PauseStream, ResumeStream, PausedStreams, StreamPaused). Optional: without
// it streams cannot be paused.
type StreamPauser interface {
	PauseStream(ctx context.Context, stream, by string) error
	ResumeStream(ctx context.Context, stream string) (bool, error)
	PausedStreams(ctx context.Context) ([]PausedStream, error)
	StreamPaused(ctx context.Context, stream string) (bool, error)
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
	if _, ok := m.driver.(ProcessRegistrar); !ok && m.cfg.cancelUnhandled {
		return missing("CancelUnhandledFleet and the other ProcessRegistrar", "it cancels only tasks no process of the fleet handles; or turn that off with WithCancelUnhandled(false)")
	}
	if _, ok := m.driver.(FiringClaimer); !ok && len(m.schedules) > 0 && !m.schedulesOff {
		return missing("ClaimFiring and the other FiringClaimer", "it runs each firing of a schedule once across processes")
	}
	for _, s := range m.streams {
		if _, ok := m.driver.(ExclusiveLocker); !ok && s.exclusive {
			return missing("TryExclusive", fmt.Sprintf("stream %q is Exclusive", s.name))
		}
		if _, ok := m.driver.(StreamLimiter); !ok && (s.rateLimit > 0 || s.holdOnRetryAfter) {
			return missing("TakeRunPermits and HoldStream", fmt.Sprintf("stream %q has a cluster-wide limit", s.name))
		}
	}
	return nil
}

// PoolerChecker refuses at Start a connection that cannot work through the
// connection pooler the driver is set up for (PostgresDriver's
// CheckPooler, see WithPooler). Optional.
type PoolerChecker interface {
	CheckPooler(ctx context.Context) error
}

// poolerCheckTimeout bounds PoolerChecker's check at Start: a database that
// does not answer by then is checked again by the claims.
const poolerCheckTimeout = 2 * time.Second

// checkPooler reports a connection the driver's pooler cannot work with.
func (m *SyncManager) checkPooler(ctx context.Context) error {
	pc, ok := m.driver.(PoolerChecker)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, poolerCheckTimeout)
	defer cancel()
	return pc.CheckPooler(ctx)
}
