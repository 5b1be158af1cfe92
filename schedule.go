package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-co-op/gocron/v2"
)

// scheduledJob is one scheduled action and when it runs.
type scheduledJob struct {
	name   string
	action ScheduledAction
	stream string
	period time.Duration // interval schedules
	cron   string        // cron schedules
	window time.Duration // runs of the job closer than this are one run
}

// ScheduleOption configures a scheduled action.
type ScheduleOption func(*scheduledJob)

// ScheduleName names the schedule. Processes that share a queue run a
// schedule of one name once per period between them. The default name is
// built from the action's stream, Go type and period or cron spec.
func ScheduleName(name string) ScheduleOption {
	return func(j *scheduledJob) { j.name = name }
}

// Schedule runs action every period in its stream (the original call).
// Runs do not pile up: a run still going when the next is due makes that one
// skip. With several processes sharing the queue each run happens on one.
func (m *SyncManager) Schedule(action ScheduledAction, period time.Duration, opts ...ScheduleOption) error {
	if period <= 0 {
		return fmt.Errorf("queue: schedule %T: period must be positive, got %s", action, period)
	}
	return m.addSchedule(&scheduledJob{action: action, period: period, window: period / 2}, opts)
}

// ScheduleCron runs action on a cron spec: five fields (minute hour day
// month weekday), or six with seconds first.
func (m *SyncManager) ScheduleCron(action ScheduledAction, spec string, opts ...ScheduleOption) error {
	cron := gocron.NewDefaultCron(len(strings.Fields(spec)) == 6)
	now := time.Now()
	if err := cron.IsValid(spec, time.Local, now); err != nil {
		return fmt.Errorf("queue: schedule %T: bad cron spec %q: %w", action, spec, err)
	}
	// Runs closer together than half the gap between two firings are the
	// same run seen from several processes.
	next := cron.Next(now)
	window := cron.Next(next).Sub(next) / 2
	return m.addSchedule(&scheduledJob{action: action, cron: spec, window: window}, opts)
}

func (m *SyncManager) addSchedule(j *scheduledJob, opts []ScheduleOption) error {
	if j.action == nil {
		return errors.New("queue: schedule: nil action")
	}
	j.stream = j.action.Stream()
	if j.stream == "" {
		return fmt.Errorf("queue: schedule %T: empty stream", j.action)
	}
	when := j.cron
	if when == "" {
		when = j.period.String()
	}
	j.name = fmt.Sprintf("%s/%T@%s", j.stream, j.action, when)
	for _, opt := range opts {
		opt(j)
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

// scheduler is the service that fires the scheduled actions through gocron.
// Its stop ends the firing and waits for the runs in progress; when the
// stop's deadline passes first, their contexts are cancelled.
type scheduler struct {
	m      *SyncManager
	gocron gocron.Scheduler
	ctx    context.Context // scheduled runs' context
	cancel context.CancelCauseFunc
}

// newScheduler creates the scheduler with every schedule, or nil when
// there are none (or RunUntilIdle turned them off).
func (m *SyncManager) newScheduler() (*scheduler, error) {
	if len(m.schedules) == 0 || m.schedulesOff {
		return nil, nil
	}
	g, err := gocron.NewScheduler(gocron.WithStopTimeout(m.cfg.stopTimeout))
	if err != nil {
		return nil, fmt.Errorf("queue: scheduler: %w", err)
	}
	sc := &scheduler{m: m, gocron: g}
	sc.ctx, sc.cancel = context.WithCancelCause(context.Background())
	me := processName()
	for _, j := range m.schedules {
		var def gocron.JobDefinition
		opts := []gocron.JobOption{gocron.WithName(j.name), gocron.WithSingletonMode(gocron.LimitModeReschedule)}
		if j.cron != "" {
			def = gocron.CronJob(j.cron, len(strings.Fields(j.cron)) == 6)
		} else {
			// Align interval runs to multiples of the period so processes
			// started at different times fire together and dedupe.
			def = gocron.DurationJob(j.period)
			opts = append(opts, gocron.WithStartAt(gocron.WithStartDateTimePast(time.Now().Truncate(j.period))))
		}
		j, st := j, m.streams[j.stream]
		if _, err := g.NewJob(def, gocron.NewTask(func() { sc.run(j, st, me) }), opts...); err != nil {
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

// run runs one scheduled action: only if no other process ran this
// schedule within its window, in a slot of its stream, with panics
// recovered and errors reported.
func (sc *scheduler) run(j *scheduledJob, s *stream, me string) {
	m := sc.m
	if sc.ctx.Err() != nil {
		return
	}
	if s.exclusive && s.lock.Load() == nil {
		return // another process holds this stream
	}
	ctx, cancel := context.WithTimeout(sc.ctx, 10*time.Second)
	defer cancel()
	if p, ok := m.driver.(StreamPauser); ok {
		if paused, err := p.StreamPaused(ctx, s.name); err != nil || paused {
			if err != nil {
				m.report(fmt.Errorf("scheduled %s: %w", j.name, err))
			}
			return
		}
	}
	first, err := m.driver.(RunRecorder).StartScheduledRun(ctx, j.name, me, j.window)
	if err != nil {
		m.report(fmt.Errorf("scheduled %s: %w", j.name, err))
		return
	}
	if !first {
		return
	}
	if !s.takeSlot() {
		return
	}
	defer s.freeSlot()
	defer func() {
		if r := recover(); r != nil {
			m.report(fmt.Errorf("scheduled %s: panic: %v", j.name, r))
		}
	}()
	if c, ok := j.action.(contextAction); ok {
		err = c.DoContext(sc.ctx)
	} else {
		err = j.action.Do()
	}
	if err != nil {
		m.report(fmt.Errorf("scheduled %s: %w", j.name, err))
	}
}

// contextAction is a scheduled action that can be cancelled: the manager
// calls DoContext instead of Do, with a context cancelled when a shutdown
// runs out of time.
type contextAction interface {
	DoContext(ctx context.Context) error
}
