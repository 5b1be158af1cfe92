package queue

import (
	"errors"
	"fmt"
	"time"

	"github.com/jonboulle/clockwork"
)

// DefaultScheduleTimeout bounds one run of a scheduled action unless
// ScheduleTimeout says otherwise.
const DefaultScheduleTimeout = time.Hour

// ScheduleOption configures a scheduled action.
type ScheduleOption func(*scheduledJob)

// ScheduleName names the schedule. Processes that share a queue run each
// firing of a schedule of one name once between them, so give a schedule
// the same name in every process. The default name is built from the
// action's stream, Go type and period or cron spec.
func ScheduleName(name string) ScheduleOption {
	return func(j *scheduledJob) { j.name = name }
}

// ScheduleTimeout bounds one run of the scheduled action (default
// DefaultScheduleTimeout). When it passes, the action's context is
// cancelled (context.Cause says ErrScheduleTimeout) and the timeout is
// reported. An action that ignores its context keeps its stream's slot until
// it returns, as a task action does: it is reported again each time its run
// has doubled in length.
func ScheduleTimeout(d time.Duration) ScheduleOption {
	return func(j *scheduledJob) {
		if d <= 0 {
			j.setErr(fmt.Errorf("ScheduleTimeout must be positive, got %s", d))
		}
		j.timeout = d
	}
}

// ScheduleTimeZone reads a cron spec's fields in loc (default time.Local).
// A spec may name its zone itself with a "CRON_TZ=Area/City " prefix.
// Processes that share a schedule must agree on its zone, or they compute
// different firings.
func ScheduleTimeZone(loc *time.Location) ScheduleOption {
	return func(j *scheduledJob) {
		if loc == nil {
			j.setErr(errors.New("ScheduleTimeZone: nil location"))
		}
		j.loc = loc
	}
}

// MissedFirings says what happens to firings that passed while no process
// could run them.
type MissedFirings int

const (
	// MissedSkip leaves missed firings out: the schedule goes on with its
	// next firing (the default).
	MissedSkip MissedFirings = iota
	// MissedRunOnce runs the schedule once to catch up: when a process
	// starts and finds firings missed since the last one that ran anywhere,
	// and when this process's run of the schedule ends after further
	// firings came due. The run's Firing has CatchUp set and the newest
	// missed firing's time. A firing whose process died during its run
	// (its registry entry expired with the run unfinished) runs again on
	// another process, with Rescued set.
	MissedRunOnce
)

// String names the policy.
func (p MissedFirings) String() string {
	switch p {
	case MissedSkip:
		return "skip"
	case MissedRunOnce:
		return "run-once"
	}
	return fmt.Sprintf("MissedFirings(%d)", int(p))
}

// ScheduleMissed sets what happens to missed firings (default MissedSkip).
func ScheduleMissed(p MissedFirings) ScheduleOption {
	return func(j *scheduledJob) {
		if p != MissedSkip && p != MissedRunOnce {
			j.setErr(fmt.Errorf("ScheduleMissed: unknown policy %d", p))
		}
		j.missed = p
	}
}

func (j *scheduledJob) setErr(err error) {
	if j.optErr == nil {
		j.optErr = err
	}
}

// ErrScheduleTimeout is the cause of a scheduled action's context when its
// ScheduleTimeout passes, and is wrapped by the error reported then.
var ErrScheduleTimeout = errors.New("queue: scheduled action timed out")

// scheduleConfig holds the SyncManager's settings for schedules.
type scheduleConfig struct {
	clock clockwork.Clock // nil: the real clock
}

// WithScheduleClock makes schedules fire by clock instead of the real one
// (gocron's WithClock). With a clockwork.FakeClock a test moves through days
// of firings in moments. Only the schedules' firing times follow it; timeouts,
// leases and the database keep real time.
func WithScheduleClock(clock clockwork.Clock) ManagerOption {
	return func(c *managerConfig) { c.sched.clock = clock }
}
