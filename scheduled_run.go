package queue

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
)

// FiringClaimer is the driver capability that makes each firing of a
// schedule run once across processes: a row per firing, created by the
// process that runs it. It is required when schedules are registered.
type FiringClaimer interface {
	ClaimFiring(ctx context.Context, f Firing, claimedBy, processID string) (bool, error)
	FinishFiring(ctx context.Context, f Firing, runErr error) error
	LastFiring(ctx context.Context, schedule string) (time.Time, bool, error)
}

// onFiring is what gocron runs when a schedule's firing comes due. Wakes
// coalesce: while this process runs the schedule, a wake is noted and
// served by the run in progress once it ends, so runs never pile up and
// gocron's own calls return at once.
func (m *SyncManager) onFiring(j *scheduledJob, s *stream) {
	j.wake.Store(true)
	for j.run.TryLock() {
		m.serveWakes(j, s)
		j.run.Unlock()
		if !j.wake.Load() {
			return
		}
	}
}

// serveWakes runs the firings due while wakes come in; with MissedRunOnce
// it also catches up with firings that came due during a run, and runs
// again the firings whose process died while it ran them. Call with j.run
// held.
func (m *SyncManager) serveWakes(j *scheduledJob, s *stream) {
	for j.wake.Swap(false) && !m.stopping() {
		m.rescueFirings(j, s, false)
		m.runDue(j, s)
		for j.missed == MissedRunOnce && !m.stopping() && m.runDue(j, s) {
		}
	}
}

// runDue runs the firings due now and reports whether there were any.
// Firings that came due while this process ran the previous one are left to
// the other processes, or, under MissedRunOnce, caught up with one run. Call
// with j.run held.
func (m *SyncManager) runDue(j *scheduledJob, s *stream) bool {
	whileBusy, toRun := j.takeDue(m.scheduleClock().Now())
	if n := len(whileBusy); n > 0 {
		if j.missed == MissedRunOnce {
			m.runFiring(j, s, Firing{Schedule: j.name, At: whileBusy[n-1], CatchUp: true})
		} else {
			m.cfg.logger.Info("esync: firings came due while the schedule's previous run was going on this process; left to the other processes",
				"schedule", j.name, "count", n, "first", whileBusy[0])
		}
	}
	for _, at := range toRun {
		m.runFiring(j, s, Firing{Schedule: j.name, At: at})
	}
	return len(whileBusy)+len(toRun) > 0
}

// onStart looks, once at start, for firings that passed between the newest
// firing any process ran and this start: skipped (logged) or, under MissedRunOnce, caught
// up with one run. A schedule that never ran anywhere has missed nothing.
func (m *SyncManager) onStart(j *scheduledJob, s *stream) {
	fc := m.driver.(FiringClaimer)
	ctx, cancel := context.WithTimeout(m.sched.ctx, 10*time.Second)
	last, ok, err := fc.LastFiring(ctx, j.name)
	cancel()
	if err != nil {
		m.report(fmt.Errorf("scheduled %s: look for missed firings: %w", j.name, err))
		return
	}
	if s.exclusive && j.missed == MissedRunOnce {
		s.holdExclusive(m.sched.ctx) // take the stream's lock now if it is free, not after the stream loop's first try
	}
	j.run.Lock()
	defer func() {
		j.run.Unlock()
		if j.wake.Load() {
			m.onFiring(j, s) // a wake that came while the lock was held
		}
	}()
	m.rescueFirings(j, s, true)
	if !ok {
		return
	}
	at, missed := j.latestIn(last, j.started)
	if !missed {
		return
	}
	if j.missed == MissedSkip {
		m.cfg.logger.Info("esync: firings were missed while no process ran the schedule; skipped",
			"schedule", j.name, "last_ran", last, "newest_missed", at)
		return
	}
	m.runFiring(j, s, Firing{Schedule: j.name, At: at, CatchUp: true})
	j.wake.Store(true) // look for firings that came due meanwhile
	m.serveWakes(j, s)
}

// stopping reports whether the scheduler has been told to stop.
func (m *SyncManager) stopping() bool {
	select {
	case <-m.sched.stopping:
		return true
	default:
		return false
	}
}

// runFiring runs one firing in a slot of the schedule's stream if this
// process wins its row in the firing table: with the schedule's timeout,
// panics recovered, errors reported and the outcome recorded.
func (m *SyncManager) runFiring(j *scheduledJob, s *stream, f Firing) {
	if m.stopping() {
		return
	}
	if s.exclusive && s.lock.Load() == nil {
		return // another process holds this stream
	}
	if m.streamPaused(s) {
		return
	}
	if !s.takeSlot() {
		return
	}
	defer s.freeSlot()
	fc, _ := m.driver.(FiringClaimer)
	if fc != nil {
		ctx, cancel := context.WithTimeout(m.sched.ctx, 10*time.Second)
		won, err := fc.ClaimFiring(ctx, f, processName(), m.processID())
		cancel()
		if err != nil {
			m.report(fmt.Errorf("scheduled %s (firing %s): claim: %w", j.name, f.At.Format(time.RFC3339Nano), err))
			return
		}
		if !won {
			return // another process runs it
		}
	}
	m.runClaimed(j, f, fc)
}

// processID is this manager's id in the process registry ("" without one).
func (m *SyncManager) processID() string {
	if m.registry == nil {
		return ""
	}
	return m.registry.entry.ID
}

// runClaimed runs a firing this process has claimed, in a slot it holds,
// and records the outcome (fc may be nil).
func (m *SyncManager) runClaimed(j *scheduledJob, f Firing, fc FiringClaimer) {
	started := time.Now()
	err := m.callScheduled(j, f)
	j.lastRunEnd = m.scheduleClock().Now()
	if fc != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(m.sched.ctx), 10*time.Second)
		if ferr := fc.FinishFiring(ctx, f, err); ferr != nil {
			m.report(fmt.Errorf("scheduled %s (firing %s): record outcome: %w", j.name, f.At.Format(time.RFC3339Nano), ferr))
		}
		cancel()
	}
	if err != nil && !errors.Is(err, ErrScheduleTimeout) {
		m.report(fmt.Errorf("scheduled %s (firing %s, ran %s): %w", j.name, f.At.Format(time.RFC3339Nano), time.Since(started).Round(time.Millisecond), err))
	}
}

// callScheduled runs the action under a context with the schedule's
// timeout. At the timeout the context is cancelled and the timeout
// reported; an action that goes on regardless is reported again each time
// its run doubles in length. A panic becomes an error with its text.
func (m *SyncManager) callScheduled(j *scheduledJob, f Firing) (err error) {
	ctx, cancel := context.WithTimeoutCause(context.WithValue(m.sched.ctx, firingKey{}, f), j.timeout, ErrScheduleTimeout)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go m.watchOverrun(j, f, ctx, done)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, firstLines(debug.Stack(), 12))
		}
		if err != nil && errors.Is(context.Cause(ctx), ErrScheduleTimeout) && errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", ErrScheduleTimeout, err) // reported already
		}
	}()
	return j.do(ctx)
}

// watchOverrun reports a run that passed its timeout, then again at twice,
// four times, … the timeout while it goes on, until done is closed.
func (m *SyncManager) watchOverrun(j *scheduledJob, f Firing, ctx context.Context, done <-chan struct{}) {
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	if !errors.Is(context.Cause(ctx), ErrScheduleTimeout) {
		return // cancelled by a shutdown, not timed out
	}
	at := f.At.Format(time.RFC3339Nano)
	m.report(fmt.Errorf("scheduled %s (firing %s): %w after %s; its context is cancelled, and its stream %q stays taken until it returns",
		j.name, at, ErrScheduleTimeout, j.timeout, j.stream))
	for wait := j.timeout; ; wait *= 2 {
		t := time.NewTimer(wait)
		select {
		case <-done:
			t.Stop()
			return
		case <-t.C:
		}
		m.report(fmt.Errorf("scheduled %s (firing %s): %w: still running %s after it started, ignoring its cancelled context; stream %q stays taken",
			j.name, at, ErrScheduleTimeout, 2*wait, j.stream))
	}
}

// FiringRescuer is the driver capability that hands a firing whose process
// died during its run to another process (optional; used with
// MissedRunOnce).
type FiringRescuer interface {
	RescueFiring(ctx context.Context, schedule, claimedBy, processID string) (Firing, bool, error)
}

// rescueFirings runs again, under MissedRunOnce, the firings of j that a
// process claimed and died running (its registry entry expired with the run
// unfinished), newest first, each on one process. It looks at most once a
// heartbeat interval unless now is set: a dead process is known only once
// its entry expires. Call with j.run held.
func (m *SyncManager) rescueFirings(j *scheduledJob, s *stream, now bool) {
	fr, ok := m.driver.(FiringRescuer)
	if !ok || j.missed != MissedRunOnce || m.registry == nil {
		return
	}
	if !now && time.Since(j.lastRescue) < m.cfg.fleet.heartbeat {
		return
	}
	j.lastRescue = time.Now()
	fc, _ := m.driver.(FiringClaimer)
	for !m.stopping() {
		if s.exclusive && s.lock.Load() == nil {
			return
		}
		if !s.takeSlot() {
			return
		}
		ctx, cancel := context.WithTimeout(m.sched.ctx, 10*time.Second)
		f, ok, err := fr.RescueFiring(ctx, j.name, processName(), m.processID())
		cancel()
		if err != nil || !ok {
			s.freeSlot()
			if err != nil {
				m.report(fmt.Errorf("scheduled %s: look for firings of dead processes: %w", j.name, err))
			}
			return
		}
		m.cfg.logger.Info("esync: running again a firing whose process died during its run", "schedule", j.name, "firing", f.At)
		m.runClaimed(j, f, fc)
		s.freeSlot()
	}
}

// streamPaused reports whether an operator paused s; its firings do not
// run meanwhile (an error counts as paused and is reported).
func (m *SyncManager) streamPaused(s *stream) bool {
	p, ok := m.driver.(StreamPauser)
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(m.sched.ctx, 10*time.Second)
	defer cancel()
	paused, err := p.StreamPaused(ctx, s.name)
	if err != nil {
		m.report(fmt.Errorf("stream %q: is it paused: %w", s.name, err))
		return true
	}
	return paused
}
