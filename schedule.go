package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jonboulle/clockwork"
)

// ScheduledActionContext is a scheduled action that takes a context. The
// context carries the schedule's timeout (ScheduleTimeout) and the firing
// being run (FiringFrom); it is cancelled when the timeout passes or a
// shutdown runs out of time. Register one with ScheduleContext or
// ScheduleCronContext; a ScheduledAction that also has DoContext is called
// through DoContext by Schedule and ScheduleCron too.
type ScheduledActionContext interface {
	DoContext(ctx context.Context) error
	Stream() string
}

// scheduledJob is one scheduled action, when it fires, and this process's
// cursor over its firings.
type scheduledJob struct {
	name    string
	action  any // for its type in messages
	do      func(ctx context.Context) error
	stream  string
	period  time.Duration // interval schedules
	cron    string        // cron schedules, as given
	spec    string        // cron spec with its CRON_TZ prefix
	seconds bool          // the spec has a seconds field
	parsed  gocron.Cron
	loc     *time.Location // set by ScheduleTimeZone
	zone    *time.Location // the cron spec's time zone
	timeout time.Duration
	missed  MissedFirings
	optErr  error // the first bad option

	// run serialises this process's runs of the schedule; the cursor below
	// is read and moved under it. wake notes a firing's wake-up for the run
	// in progress.
	run        sync.Mutex
	wake       atomic.Bool
	next       time.Time // the first firing this process has not dealt with
	started    time.Time // when the cursor began: later firings are not missed ones
	lastRunEnd time.Time // when this process's last run of it ended
	lastRescue time.Time // when it last looked for firings of dead processes
}

// Schedule runs action every period in its stream (the original call).
// Firings are the multiples of period (counted from the zero time), the same
// in every process; each firing runs once across the processes sharing the
// queue (see ScheduleCron for the rules).
func (m *SyncManager) Schedule(action ScheduledAction, period time.Duration, opts ...ScheduleOption) error {
	if action == nil {
		return errors.New("queue: schedule: nil action")
	}
	return m.addInterval(action, action.Stream(), doFunc(action), period, opts)
}

// ScheduleContext is Schedule for an action that takes a context.
func (m *SyncManager) ScheduleContext(action ScheduledActionContext, period time.Duration, opts ...ScheduleOption) error {
	if action == nil {
		return errors.New("queue: schedule: nil action")
	}
	return m.addInterval(action, action.Stream(), action.DoContext, period, opts)
}

// ScheduleCron runs action on a cron spec: five fields (minute hour day
// month weekday), or six with seconds first, optionally after a
// "CRON_TZ=Area/City " prefix (or see ScheduleTimeZone; the default zone is
// time.Local). Descriptors such as @daily work; @every does not (its firings
// depend on when each process started; use Schedule).
//
// A firing is identified by the schedule's name and the time it is due.
// Every firing runs once across the processes sharing the queue: the process
// whose row for it lands first in the firing table runs it, the others skip
// it. A firing that comes due while this process is still running the
// schedule's previous firing is left to the other processes (runs do not
// pile up); with ScheduleMissed(MissedRunOnce) the process catches up with
// one run once the previous one ends. Firings that passed while no process
// was running are skipped, or caught up with one run at start with
// MissedRunOnce. A firing whose process dies during its run is not run again
// unless MissedRunOnce is set, in which case another process runs it once
// the dead one's registry entry has expired.
func (m *SyncManager) ScheduleCron(action ScheduledAction, spec string, opts ...ScheduleOption) error {
	if action == nil {
		return errors.New("queue: schedule: nil action")
	}
	return m.addCron(action, action.Stream(), doFunc(action), spec, opts)
}

// ScheduleCronContext is ScheduleCron for an action that takes a context.
func (m *SyncManager) ScheduleCronContext(action ScheduledActionContext, spec string, opts ...ScheduleOption) error {
	if action == nil {
		return errors.New("queue: schedule: nil action")
	}
	return m.addCron(action, action.Stream(), action.DoContext, spec, opts)
}

// doFunc calls DoContext when the action has it, else Do.
func doFunc(action ScheduledAction) func(context.Context) error {
	if c, ok := action.(interface{ DoContext(context.Context) error }); ok {
		return c.DoContext
	}
	return func(context.Context) error { return action.Do() }
}

func (m *SyncManager) addInterval(action any, stream string, do func(context.Context) error, period time.Duration, opts []ScheduleOption) error {
	if period <= 0 {
		return fmt.Errorf("queue: schedule %T: period must be positive, got %s", action, period)
	}
	j := &scheduledJob{action: action, do: do, stream: stream, period: period}
	return m.addSchedule(j, period.String(), opts)
}

func (m *SyncManager) addCron(action any, stream string, do func(context.Context) error, spec string, opts []ScheduleOption) error {
	j := &scheduledJob{action: action, do: do, stream: stream, cron: spec}
	return m.addSchedule(j, spec, opts)
}

// parseCron checks the job's cron spec in its time zone and keeps the parsed
// form for computing firings.
func (j *scheduledJob) parseCron(now time.Time) error {
	spec := strings.TrimSpace(j.cron)
	zone, body := "", spec
	if strings.HasPrefix(spec, "CRON_TZ=") || strings.HasPrefix(spec, "TZ=") {
		head, rest, _ := strings.Cut(spec, " ")
		_, zone, _ = strings.Cut(head, "=")
		body = strings.TrimSpace(rest)
	}
	if strings.HasPrefix(body, "@every") {
		return errors.New("@every fires relative to each process's start; use Schedule with a period")
	}
	switch {
	case j.loc != nil && zone != "" && zone != j.loc.String():
		return fmt.Errorf("time zone %q in the spec and %q from ScheduleTimeZone differ", zone, j.loc)
	case zone == "" && j.loc != nil:
		zone = j.loc.String()
	case zone == "":
		zone = time.Local.String()
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return fmt.Errorf("unknown time zone %q: %w", zone, err)
	}
	j.zone = loc
	j.spec = "CRON_TZ=" + zone + " " + body
	j.seconds = len(strings.Fields(body)) == 6
	c := gocron.NewDefaultCron(j.seconds)
	if err := c.IsValid(j.spec, time.Local, now); err != nil {
		return err
	}
	j.parsed = c
	return nil
}

func (m *SyncManager) addSchedule(j *scheduledJob, when string, opts []ScheduleOption) error {
	j.timeout = DefaultScheduleTimeout
	if j.stream == "" {
		return fmt.Errorf("queue: schedule %T: empty stream", j.action)
	}
	j.name = fmt.Sprintf("%s/%T@%s", j.stream, j.action, when)
	for _, opt := range opts {
		opt(j)
	}
	if j.optErr != nil {
		return fmt.Errorf("queue: schedule %q: %w", j.name, j.optErr)
	}
	if err := checkText("schedule name", j.name, MaxNameLength, true); err != nil {
		return fmt.Errorf("queue: schedule: %w", err)
	}
	if j.cron != "" {
		if err := j.parseCron(time.Now()); err != nil {
			return fmt.Errorf("queue: schedule %T: bad cron spec %q: %w", j.action, j.cron, err)
		}
	} else if j.loc != nil {
		return fmt.Errorf("queue: schedule %q: ScheduleTimeZone applies to cron specs only", j.name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state != stateNew {
		return fmt.Errorf("queue: schedule %q: manager already started", j.name)
	}
	for _, other := range m.schedules {
		if other.name == j.name {
			return fmt.Errorf("queue: schedule %q: name already used; give it another with ScheduleName", j.name)
		}
	}
	m.schedules = append(m.schedules, j)
	m.streamLocked(j.stream)
	return nil
}

// scheduleClock is the clock schedules fire by.
func (m *SyncManager) scheduleClock() clockwork.Clock {
	if m.cfg.sched.clock != nil {
		return m.cfg.sched.clock
	}
	return clockwork.NewRealClock()
}

// scheduler is the service that fires the scheduled actions: gocron wakes
// a schedule at its firings; which firings run is decided by the
// schedule's cursor and the firing table (scheduled_run.go). Its stop ends
// the firing and waits for the runs in progress; when the stop's deadline
// passes first, their contexts are cancelled.
type scheduler struct {
	m        *SyncManager
	gocron   gocron.Scheduler
	ctx      context.Context // scheduled runs' context
	cancel   context.CancelCauseFunc
	stopping chan struct{} // closed when stop begins: no firing starts after
}

// newScheduler creates the scheduler with every schedule (not yet
// started), or nil when there are none or RunUntilIdle turned them off.
func (m *SyncManager) newScheduler() (*scheduler, error) {
	if len(m.schedules) == 0 || m.schedulesOff {
		return nil, nil
	}
	clock := m.scheduleClock()
	g, err := gocron.NewScheduler(gocron.WithStopTimeout(m.cfg.stopTimeout), gocron.WithClock(clock))
	if err != nil {
		return nil, fmt.Errorf("queue: scheduler: %w", err)
	}
	sc := &scheduler{m: m, gocron: g, stopping: make(chan struct{})}
	sc.ctx, sc.cancel = context.WithCancelCause(context.Background())
	now := clock.Now()
	for _, j := range m.schedules {
		var def gocron.JobDefinition
		// No singleton mode: onFiring coalesces wakes itself, and a wake
		// that gocron dropped while a run went on would be a firing lost.
		opts := []gocron.JobOption{gocron.WithName(j.name)}
		if j.cron != "" {
			def = gocron.CronJob(j.spec, j.seconds)
		} else {
			// Firings are multiples of the period, so processes started at
			// different times agree on them.
			def = gocron.DurationJob(j.period)
			opts = append(opts, gocron.WithStartAt(gocron.WithStartDateTimePast(j.after(now))))
		}
		j.started, j.next = now, j.after(now)
		j, st := j, m.streams[j.stream]
		if _, err := g.NewJob(def, gocron.NewTask(func() { m.onFiring(j, st) }), opts...); err != nil {
			g.Shutdown()
			return nil, fmt.Errorf("queue: schedule %q: %w", j.name, err)
		}
		// Look for firings missed while no process ran (skip or catch up).
		start := gocron.OneTimeJob(gocron.OneTimeJobStartImmediately())
		if _, err := g.NewJob(start, gocron.NewTask(func() { m.onStart(j, st) }), gocron.WithName(j.name+" (start)")); err != nil {
			g.Shutdown()
			return nil, fmt.Errorf("queue: schedule %q: %w", j.name, err)
		}
	}
	return sc, nil
}

func (sc *scheduler) start(context.Context) error {
	sc.gocron.Start()
	return nil
}

func (sc *scheduler) stop(ctx context.Context) error {
	close(sc.stopping)
	done := make(chan error, 1)
	go func() { done <- sc.gocron.Shutdown() }()
	select {
	case err := <-done:
		sc.cancel(errStopped)
		if err != nil {
			return fmt.Errorf("scheduler shutdown: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	// A hard stop: the runs still going are cancelled and get a moment to
	// return.
	sc.cancel(errShutdown)
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("scheduler shutdown: %w", err)
		}
		return nil
	case <-time.After(hardStopGrace):
		return fmt.Errorf("scheduler: scheduled runs still going after the shutdown's deadline; their contexts are cancelled: %w", context.Cause(ctx))
	}
}
