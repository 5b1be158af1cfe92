package queue_test

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/esync/queue"
)

// ctxSchedule is a ScheduledActionContext made of a stream and a function.
type ctxSchedule struct {
	stream string
	do     func(ctx context.Context) error
}

func (s ctxSchedule) DoContext(ctx context.Context) error { return s.do(ctx) }
func (s ctxSchedule) Stream() string                      { return s.stream }

// firingLog records the firings scheduled actions ran, and in which
// manager.
type firingLog struct {
	mu   sync.Mutex
	runs []firingRun
}

type firingRun struct {
	manager int
	firing  queue.Firing
}

// action records each run's firing as run by manager.
func (l *firingLog) action(stream string, manager int) ctxSchedule {
	return ctxSchedule{stream, func(ctx context.Context) error {
		f, ok := queue.FiringFrom(ctx)
		if !ok {
			return fmt.Errorf("scheduled action's context has no firing")
		}
		l.mu.Lock()
		l.runs = append(l.runs, firingRun{manager, f})
		l.mu.Unlock()
		return nil
	}}
}

// count is how many runs of schedule's firing at at were recorded.
func (l *firingLog) count(schedule string, at time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.runs {
		if r.firing.Schedule == schedule && r.firing.At.Equal(at) {
			n++
		}
	}
	return n
}

// of returns the firing times recorded for schedule, in the order they ran.
func (l *firingLog) of(schedule string) []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []time.Time
	for _, r := range l.runs {
		if r.firing.Schedule == schedule {
			out = append(out, r.firing.At)
		}
	}
	return out
}

func (l *firingLog) snapshot() []firingRun {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]firingRun(nil), l.runs...)
}

// utc parses a "2006-01-02 15:04:05" time in UTC.
func utc(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.ParseInLocation(time.DateTime, s, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

func utcs(t *testing.T, ss ...string) []time.Time {
	out := make([]time.Time, len(ss))
	for i, s := range ss {
		out[i] = utc(t, s)
	}
	return out
}

// driveClock moves clock from firing to firing of want (schedule name ->
// firing times): it waits until gocron has armed its timers (timers of
// them), advances to the next wanted time, and waits until every schedule
// due then has run that firing, before going on.
func driveClock(t *testing.T, clock *clockwork.FakeClock, timers int, log *firingLog, want map[string][]time.Time) {
	t.Helper()
	var times []time.Time
	for _, ts := range want {
		times = append(times, ts...)
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, at := range times {
		if i > 0 && at.Equal(times[i-1]) {
			continue
		}
		if err := clock.BlockUntilContext(ctx, timers); err != nil {
			t.Fatalf("gocron did not arm %d timers before %s: %v", timers, at, err)
		}
		clock.Advance(at.Sub(clock.Now()))
		for name, ts := range want {
			for _, w := range ts {
				if w.Equal(at) {
					smEventually(t, 30*time.Second, fmt.Sprintf("schedule %s to run its firing at %s", name, at), func() bool { return log.count(name, at) > 0 })
				}
			}
		}
	}
}

// requireFirings fails unless schedule ran exactly the firings in want, each
// once, in order.
func requireFirings(t *testing.T, log *firingLog, schedule string, want []time.Time) {
	t.Helper()
	got := log.of(schedule)
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].Equal(want[i])
	}
	if !ok {
		t.Fatalf("schedule %s ran firings\n  %s\nwant\n  %s", schedule, fmtTimes(got), fmtTimes(want))
	}
	t.Logf("schedule %s ran each of its %d firings once: %s", schedule, len(got), strings.ReplaceAll(fmtTimes(got), "\n  ", ", "))
}

func fmtTimes(ts []time.Time) string {
	var b []string
	for _, at := range ts {
		b = append(b, at.UTC().Format("Mon 2006-01-02 15:04:05"))
	}
	return strings.Join(b, "\n  ")
}

// TestScheduleIrregularSpecsRunEveryFiring: cron specs whose gaps are
// uneven run every firing, with one manager, over eleven days of a fake
// clock: weekdays only (registered on a Thursday, so the first gap is a day
// and a later one three), an uneven hour list registered between its hours,
// and an uneven list of seconds.
func TestScheduleIrregularSpecsRunEveryFiring(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	clock := clockwork.NewFakeClockAt(utc(t, "2026-01-08 00:30:00")) // a Thursday
	var log firingLog
	var errs errorLog
	sm := queue.NewSyncManager(e.d, queue.WithScheduleClock(clock))
	sm.SetErrorHandler(errs.handle)
	specs := map[string]string{
		"weekdays": "0 9 * * 1-5",
		"hours":    "0 0,1 * * *",
		"seconds":  "0,1,5,30 * * * * *",
	}
	for name, spec := range specs {
		if err := sm.ScheduleCronContext(log.action("s-"+name, 0), spec, queue.ScheduleName(name), queue.ScheduleTimeZone(time.UTC)); err != nil {
			t.Fatal(err)
		}
	}
	smStart(t, sm)
	want := map[string][]time.Time{
		"weekdays": utcs(t, "2026-01-08 09:00:00", "2026-01-09 09:00:00", "2026-01-12 09:00:00", "2026-01-13 09:00:00",
			"2026-01-14 09:00:00", "2026-01-15 09:00:00", "2026-01-16 09:00:00", "2026-01-19 09:00:00"),
		"hours": utcs(t, "2026-01-08 01:00:00"),
		"seconds": utcs(t, "2026-01-08 00:30:01", "2026-01-08 00:30:05", "2026-01-08 00:30:30", "2026-01-08 00:31:00", "2026-01-08 00:31:01", "2026-01-08 00:31:05", "2026-01-08 00:31:30",
			"2026-01-08 00:32:00", "2026-01-08 00:32:01", "2026-01-08 00:32:05", "2026-01-08 00:32:30"),
	}
	for day := 9; day <= 19; day++ {
		for _, hour := range []int{0, 1} {
			want["hours"] = append(want["hours"], time.Date(2026, 1, day, hour, 0, 0, 0, time.UTC))
		}
	}
	// The seconds schedule fires about 130,000 times in eleven days: follow
	// it for two and a half minutes, then the others alone.
	short := map[string][]time.Time{"seconds": want["seconds"]}
	for name, ts := range want {
		if name != "seconds" {
			var early []time.Time
			for _, at := range ts {
				if at.Before(want["seconds"][len(want["seconds"])-1]) {
					early = append(early, at)
				}
			}
			short[name] = early
		}
	}
	driveClock(t, clock, 3, &log, short)
	requireFirings(t, &log, "seconds", want["seconds"])
	smStop(t, sm)

	// The rest of the days with the day schedules alone: a second manager
	// on the same clock goes on where the first left off.
	sm2 := queue.NewSyncManager(e.d, queue.WithScheduleClock(clock))
	sm2.SetErrorHandler(errs.handle)
	for _, name := range []string{"weekdays", "hours"} {
		if err := sm2.ScheduleCronContext(log.action("s-"+name, 1), specs[name], queue.ScheduleName(name), queue.ScheduleTimeZone(time.UTC)); err != nil {
			t.Fatal(err)
		}
	}
	smStart(t, sm2)
	driveClock(t, clock, 2, &log, map[string][]time.Time{"weekdays": want["weekdays"], "hours": want["hours"][len(short["hours"]):]})
	requireFirings(t, &log, "weekdays", want["weekdays"])
	requireFirings(t, &log, "hours", want["hours"])
	if s := errs.String(); s != "" {
		t.Fatalf("errors reported:%s", s)
	}
	var rows int
	if err := e.db.QueryRow(`SELECT count(*) FROM message_queue_schedule_firing WHERE finished_at IS NOT NULL AND error IS NULL`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if total := len(want["weekdays"]) + len(want["hours"]) + len(want["seconds"]); rows != total {
		t.Fatalf("%d finished firing rows, want %d", rows, total)
	}
}

// TestScheduleFiringOnceAcrossThreeManagers: three managers on one queue
// and one fake clock, with the same schedule (uneven seconds): each firing
// runs once between them, none is skipped.
func TestScheduleFiringOnceAcrossThreeManagers(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	clock := clockwork.NewFakeClockAt(utc(t, "2026-01-08 10:00:10"))
	var log firingLog
	var errs errorLog
	for i := 0; i < 3; i++ {
		sm := queue.NewSyncManager(smOpen(t, e.dsn), queue.WithScheduleClock(clock))
		sm.SetErrorHandler(errs.handle)
		if err := sm.ScheduleCronContext(log.action("s", i), "CRON_TZ=UTC 0,1,5,30 * * * * *", queue.ScheduleName("shared")); err != nil {
			t.Fatal(err)
		}
		smStart(t, sm)
	}
	var want []time.Time
	for m := 0; m < 4; m++ {
		for _, s := range []int{0, 1, 5, 30} {
			if m > 0 || s >= 30 {
				want = append(want, utc(t, "2026-01-08 10:00:00").Add(time.Duration(m)*time.Minute+time.Duration(s)*time.Second))
			}
		}
	}
	driveClock(t, clock, 3, &log, map[string][]time.Time{"shared": want})
	// A double run would come from a manager that lost no race: wait until
	// every manager has re-armed after the last firing, so all have tried it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, 3); err != nil {
		t.Fatal(err)
	}
	requireFirings(t, &log, "shared", want)
	byManager := map[int]int{}
	for _, r := range log.snapshot() {
		byManager[r.manager]++
	}
	t.Logf("%d firings, run per manager %v", len(want), byManager)
	if s := errs.String(); s != "" {
		t.Fatalf("errors reported:%s", s)
	}
}

// TestScheduleUnevenSecondsRealClock: on the real clock, two managers with a
// seconds list whose second gap (1s) is shorter than its first (3s) run all
// three firings, each once. (The window model this replaced skipped the
// third: it came within half the first gap of the second.)
func TestScheduleUnevenSecondsRealClock(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	first := time.Now().Truncate(time.Second).Add(3 * time.Second)
	firings := []time.Time{first, first.Add(3 * time.Second), first.Add(4 * time.Second)}
	var secs []string
	for _, f := range firings {
		secs = append(secs, fmt.Sprint(f.Second()))
	}
	spec := strings.Join(secs, ",") + " * * * * *"
	var log firingLog
	var errs errorLog
	for i := 0; i < 2; i++ {
		sm := queue.NewSyncManager(smOpen(t, e.dsn))
		sm.SetErrorHandler(errs.handle)
		if err := sm.ScheduleCronContext(log.action("s", i), spec, queue.ScheduleName("uneven"), queue.ScheduleTimeZone(time.UTC)); err != nil {
			t.Fatal(err)
		}
		smStart(t, sm)
	}
	smEventually(t, 30*time.Second, "the third firing", func() bool { return log.count("uneven", firings[2]) > 0 })
	// A second run of the first two firings would have been recorded
	// seconds ago; one of the third would come within moments of the first.
	requireFirings(t, &log, "uneven", firings)
	if s := errs.String(); s != "" {
		t.Fatalf("errors reported:%s", s)
	}
}

// TestScheduleTimeZoneAcrossDST: cron specs in America/New_York, by prefix
// and by option, fire at the zone's wall-clock time on both sides of a
// daylight saving change: 09:00 is 14:00 UTC before the spring change and
// 13:00 after; 01:30 on the autumn day, which the clocks pass twice, fires
// once.
func TestScheduleTimeZoneAcrossDST(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	for _, c := range []struct {
		name  string
		start string
		spec  string
		opts  []queue.ScheduleOption
		want  []time.Time
	}{
		{"spring", "2026-03-06 20:00:00", "0 9 * * *", []queue.ScheduleOption{queue.ScheduleTimeZone(ny)},
			utcs(t, "2026-03-07 14:00:00", "2026-03-08 13:00:00", "2026-03-09 13:00:00")},
		{"autumn", "2026-10-30 12:00:00", "CRON_TZ=America/New_York 30 1 * * *", nil,
			utcs(t, "2026-10-31 05:30:00", "2026-11-01 05:30:00", "2026-11-02 06:30:00", "2026-11-03 06:30:00")},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := clockwork.NewFakeClockAt(utc(t, c.start))
			var log firingLog
			sm := queue.NewSyncManager(e.d, queue.WithScheduleClock(clock))
			if err := sm.ScheduleCronContext(log.action("s", 0), c.spec, append(c.opts, queue.ScheduleName(c.name))...); err != nil {
				t.Fatal(err)
			}
			smStart(t, sm)
			// Driving to the last firing passes 01:30 EST on the autumn day:
			// a run for it would be recorded.
			driveClock(t, clock, 1, &log, map[string][]time.Time{c.name: c.want})
			requireFirings(t, &log, c.name, c.want)
			smStop(t, sm)
		})
	}
}

// TestScheduleMissedFirings: an hourly schedule runs at 10:00, then every
// process is down until 13:30. With the default (skip), the next run is
// 14:00's; with MissedRunOnce two managers starting together catch up once,
// with the newest missed firing (13:00), before 14:00's.
func TestScheduleMissedFirings(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	for _, policy := range []queue.MissedFirings{queue.MissedSkip, queue.MissedRunOnce} {
		t.Run(fmt.Sprint(policy), func(t *testing.T) {
			name := fmt.Sprintf("hourly-%d", policy)
			clock := clockwork.NewFakeClockAt(utc(t, "2026-01-08 09:30:00"))
			var log firingLog
			opts := []queue.ScheduleOption{queue.ScheduleName(name), queue.ScheduleTimeZone(time.UTC), queue.ScheduleMissed(policy)}
			sm := queue.NewSyncManager(e.d, queue.WithScheduleClock(clock))
			if err := sm.ScheduleCronContext(log.action("s", 0), "0 * * * *", opts...); err != nil {
				t.Fatal(err)
			}
			smStart(t, sm)
			driveClock(t, clock, 1, &log, map[string][]time.Time{name: utcs(t, "2026-01-08 10:00:00")})
			smStop(t, sm)

			clock.Advance(utc(t, "2026-01-08 13:30:00").Sub(clock.Now()))
			var lines syncBuffer
			logger := slog.New(slog.NewTextHandler(&lines, nil))
			for i := 1; i <= 2; i++ {
				sm := queue.NewSyncManager(smOpen(t, e.dsn), queue.WithScheduleClock(clock), queue.WithLogger(logger))
				if err := sm.ScheduleCronContext(log.action("s", i), "0 * * * *", opts...); err != nil {
					t.Fatal(err)
				}
				smStart(t, sm)
			}
			want := utcs(t, "2026-01-08 10:00:00", "2026-01-08 14:00:00")
			if policy == queue.MissedSkip {
				smEventually(t, 30*time.Second, "the missed firings to be logged as skipped", func() bool {
					return strings.Count(lines.String(), "missed while no process ran the schedule") == 2
				})
			} else {
				smEventually(t, 30*time.Second, "the catch-up run", func() bool { return log.count(name, utc(t, "2026-01-08 13:00:00")) > 0 })
				want = utcs(t, "2026-01-08 10:00:00", "2026-01-08 13:00:00", "2026-01-08 14:00:00")
			}
			driveClock(t, clock, 2, &log, map[string][]time.Time{name: want[len(want)-1:]})
			requireFirings(t, &log, name, want)
			for _, r := range log.snapshot() {
				if r.firing.CatchUp != (policy == queue.MissedRunOnce && r.firing.At.Hour() == 13) {
					t.Fatalf("firing %s ran with CatchUp %v", r.firing.At, r.firing.CatchUp)
				}
			}
		})
	}
}
