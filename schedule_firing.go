package queue

import (
	"context"
	"time"
)

// Firing is one firing of a schedule: the schedule's name and the time the
// firing was due. Across the processes sharing a queue each firing runs
// once.
type Firing struct {
	Schedule string
	At       time.Time
	// CatchUp is set on a run that stands for firings missed while no
	// process could run them (ScheduleMissed(MissedRunOnce)); At is the
	// newest of them.
	CatchUp bool
	// Rescued is set on a second run of a firing whose first run ended with
	// its process (ScheduleMissed(MissedRunOnce)).
	Rescued bool
}

type firingKey struct{}

// FiringFrom returns the firing a scheduled action's context belongs to.
func FiringFrom(ctx context.Context) (Firing, bool) {
	f, ok := ctx.Value(firingKey{}).(Firing)
	return f, ok
}

// after returns the job's first firing strictly after t. For cron specs it
// is the cron parser's Next with gocron's rule for the repeated hour when
// clocks fall back, applied in the spec's time zone: a wall-clock time seen
// twice fires once.
func (j *scheduledJob) after(t time.Time) time.Time {
	if j.cron == "" {
		return t.Truncate(j.period).Add(j.period)
	}
	next := j.parsed.Next(t)
	if !next.IsZero() && sameWallClock(t.In(j.zone), next.In(j.zone)) {
		next = j.parsed.Next(next)
	}
	return next
}

func sameWallClock(a, b time.Time) bool {
	ay, am, ad := a.Date()
	by, bm, bd := b.Date()
	return ay == by && am == bm && ad == bd && a.Hour() == b.Hour() && a.Minute() == b.Minute() && a.Second() == b.Second()
}

// earlyWake is how early a wake-up may come and still count for the firing
// it was set for (a wall clock stepped back a little).
func (j *scheduledJob) earlyWake() time.Duration {
	if j.cron == "" {
		return min(j.period/4, 100*time.Millisecond)
	}
	return 100 * time.Millisecond
}

// maxDueAtOnce bounds how many firings one wake-up looks at: a process that
// slept for a long time does not walk through every firing it slept over.
const maxDueAtOnce = 1000

// takeDue moves the cursor past the firings due at now and returns them in
// two groups: the ones that came due while this process was running the
// previous firing (left to other processes), and the others, oldest first,
// to be run. Call with j.run held.
func (j *scheduledJob) takeDue(now time.Time) (whileBusy []time.Time, toRun []time.Time) {
	limit := now.Add(j.earlyWake())
	for n := 0; !j.next.IsZero() && !j.next.After(limit); n++ {
		if n == maxDueAtOnce {
			// Jump to the present: the rest are missed.
			j.next = j.after(now)
			break
		}
		if j.next.Before(j.lastRunEnd) {
			whileBusy = append(whileBusy, j.next)
		} else {
			toRun = append(toRun, j.next)
		}
		j.next = j.after(j.next)
	}
	return whileBusy, toRun
}

// latestIn returns the newest firing f with last < f <= now, if any.
func (j *scheduledJob) latestIn(last, now time.Time) (time.Time, bool) {
	if !last.Before(now) {
		return time.Time{}, false
	}
	if j.cron == "" {
		f := now.Truncate(j.period)
		return f, f.After(last)
	}
	// Look back over growing spans, then walk forward to the newest firing.
	for _, span := range []time.Duration{time.Minute, time.Hour, 24 * time.Hour, 8 * 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour, 5 * 367 * 24 * time.Hour} {
		from := now.Add(-span)
		if from.Before(last) {
			from = last
		}
		f := j.after(from)
		if f.IsZero() || f.After(now) {
			if from.Equal(last) {
				return time.Time{}, false
			}
			continue
		}
		for g := j.after(f); !g.IsZero() && !g.After(now); g = j.after(g) {
			f = g
		}
		return f, true
	}
	return time.Time{}, false
}
