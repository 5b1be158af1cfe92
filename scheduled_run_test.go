package queue_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/esync/queue"
)

// findIs returns the first reported error that errors.Is target and whose
// text has s.
func (l *errorLog) findIs(target error, s string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, err := range l.errs {
		if errors.Is(err, target) && strings.Contains(err.Error(), s) {
			return err
		}
	}
	return nil
}

// TestScheduleTimeoutCancelsContext: a scheduled action that waits on its
// context has it cancelled at its ScheduleTimeout with ErrScheduleTimeout as
// cause and context.DeadlineExceeded as error; the timeout is reported once,
// recorded on the firing, and the stream's slot is free again for a task.
func TestScheduleTimeoutCancelsContext(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	var errs errorLog
	sm := queue.NewSyncManager(e.d)
	sm.SetErrorHandler(errs.handle)
	type ended struct{ err, cause error }
	got := make(chan ended, 1)
	var once sync.Once
	err := sm.ScheduleContext(ctxSchedule{"st", func(ctx context.Context) error {
		first := false
		once.Do(func() { first = true })
		if !first {
			return nil
		}
		<-ctx.Done()
		got <- ended{ctx.Err(), context.Cause(ctx)}
		return ctx.Err()
	}}, 50*time.Millisecond, queue.ScheduleName("stuck"), queue.ScheduleTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	taskRan := make(chan struct{})
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		close(taskRan)
		return queue.TaskResultSuccess, ""
	}), "job", queue.InStream("st"))
	smStart(t, sm)
	var end ended
	select {
	case end = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("the scheduled action's context was never cancelled")
	}
	if !errors.Is(end.err, context.DeadlineExceeded) || !errors.Is(end.cause, queue.ErrScheduleTimeout) {
		t.Fatalf("context ended with %v (cause %v), want DeadlineExceeded caused by ErrScheduleTimeout", end.err, end.cause)
	}
	e.add(t, "job", "k", nil)
	select {
	case <-taskRan:
	case <-time.After(30 * time.Second):
		t.Fatal("a task of the stream never ran after the timed-out scheduled run ended")
	}
	e.waitCount(t, 30*time.Second, "job", queue.TaskDone, 1)
	smEventually(t, 10*time.Second, "the timeout to be reported", func() bool { return errs.findIs(queue.ErrScheduleTimeout, "stuck") != nil })
	var msg string
	smEventually(t, 10*time.Second, "the firing's outcome to be recorded", func() bool {
		err := e.db.QueryRow(`SELECT coalesce(error, '') FROM message_queue_schedule_firing WHERE schedule_name = 'stuck' AND error IS NOT NULL`).Scan(&msg)
		return err == nil
	})
	if !strings.Contains(msg, "timed out") {
		t.Fatalf("firing recorded error %q, want the timeout", msg)
	}
	errs.mu.Lock()
	defer errs.mu.Unlock()
	timeouts := 0
	for _, err := range errs.errs {
		if errors.Is(err, queue.ErrScheduleTimeout) {
			timeouts++
		} else {
			t.Errorf("unexpected report: %v", err)
		}
	}
	if timeouts != 1 {
		t.Fatalf("the timeout was reported %d times, want once (the returned context error is not reported again)", timeouts)
	}
}

// TestScheduleTimeoutIgnored: an action without a context (the original
// ScheduledAction) that outlives its timeout is reported at the timeout and
// again at twice it, and keeps its stream's slot while it runs: a task of
// the stream waits until it returns, then runs.
func TestScheduleTimeoutIgnored(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	var errs errorLog
	sm := queue.NewSyncManager(e.d)
	sm.SetErrorHandler(errs.handle)
	inside := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	err := sm.Schedule(scheduledFunc{"st", func() error {
		first := false
		once.Do(func() { first = true; close(inside) })
		if first {
			<-release
		}
		return nil
	}}, 50*time.Millisecond, queue.ScheduleName("deaf"), queue.ScheduleTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		return queue.TaskResultSuccess, ""
	}), "job", queue.InStream("st"))
	smStart(t, sm)
	<-inside
	id := e.add(t, "job", "k", nil)
	smEventually(t, 30*time.Second, "the overrun to be reported again", func() bool {
		return errs.findIs(queue.ErrScheduleTimeout, "still running 200ms") != nil
	})
	if errs.findIs(queue.ErrScheduleTimeout, "after 100ms") == nil {
		t.Fatalf("the timeout itself was not reported:%s", errs.String())
	}
	if task := e.task(t, id); task.State != queue.TaskReady {
		t.Fatalf("task %s while the scheduled action held the stream's only slot, want READY", task.State)
	}
	close(release)
	e.waitCount(t, 30*time.Second, "job", queue.TaskDone, 1)
}

// TestScheduledPanicRecorded: a panicking scheduled action's firing records
// the panic.
func TestScheduledPanicRecorded(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	sm := queue.NewSyncManager(e.d)
	sm.SetErrorHandler(func(error) {})
	sm.ScheduleContext(ctxSchedule{"s", func(ctx context.Context) error { panic("firing boom 7f3a") }}, 50*time.Millisecond, queue.ScheduleName("boom"))
	smStart(t, sm)
	smEventually(t, 30*time.Second, "the panic to be recorded on its firing", func() bool {
		var n int
		e.db.QueryRow(`SELECT count(*) FROM message_queue_schedule_firing WHERE schedule_name = 'boom' AND error LIKE 'panic: firing boom 7f3a%'`).Scan(&n)
		return n > 0
	})
}

// TestScheduleOptionsRejected: bad schedule options and specs are refused
// with errors that say what is wrong.
func TestScheduleOptionsRejected(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	sm := queue.NewSyncManager(e.d)
	act := scheduledFunc{"s", func() error { return nil }}
	ny, _ := time.LoadLocation("America/New_York")
	for what, err := range map[string]error{
		"zero timeout":      sm.Schedule(act, time.Second, queue.ScheduleTimeout(0)),
		"nil zone":          sm.ScheduleCron(act, "0 9 * * *", queue.ScheduleTimeZone(nil)),
		"two zones":         sm.ScheduleCron(act, "CRON_TZ=Europe/Berlin 0 9 * * *", queue.ScheduleTimeZone(ny)),
		"unknown zone":      sm.ScheduleCron(act, "CRON_TZ=Mars/Olympus 0 9 * * *"),
		"@every":            sm.ScheduleCron(act, "@every 5m"),
		"zone on interval":  sm.Schedule(act, time.Second, queue.ScheduleTimeZone(time.UTC)),
		"unknown policy":    sm.Schedule(act, time.Second, queue.ScheduleMissed(queue.MissedFirings(7))),
		"empty name":        sm.Schedule(act, time.Second, queue.ScheduleName("")),
		"seven cron fields": sm.ScheduleCron(act, "0 0 9 * * * *"),
	} {
		if err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
	for _, ok := range []error{
		sm.ScheduleCron(act, "CRON_TZ=America/New_York 0 9 * * *", queue.ScheduleTimeZone(ny), queue.ScheduleName("a")),
		sm.ScheduleCron(act, "CRON_TZ=UTC 0,30 * * * * *", queue.ScheduleName("b")),
		sm.ScheduleCron(act, "@daily", queue.ScheduleName("c"), queue.ScheduleMissed(queue.MissedRunOnce)),
	} {
		if ok != nil {
			t.Errorf("refused: %v", ok)
		}
	}
}

// TestScheduleRescuesDeadProcessFiring: under MissedRunOnce, a firing whose
// process died during its run (its registry entry expired, the run never
// ended) runs again, once, on one of two managers; a firing still run by a
// live process and one claimed by a process that never registered are left
// alone.
func TestScheduleRescuesDeadProcessFiring(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	_, err := e.db.Exec(`
INSERT INTO message_queue_process (id, host, pid, expires_at, task_names) VALUES
	('dead', 'h', 1, now() - interval '1 minute', '{}'),
	('alive', 'h', 2, now() + interval '1 hour', '{}');
INSERT INTO message_queue_schedule_firing (schedule_name, fire_at, claimed_by, process_id) VALUES
	('nightly', '2026-01-08 03:00:00+00', 'h:1', 'dead'),
	('nightly', '2026-01-07 03:00:00+00', 'h:2', 'alive'),
	('nightly', '2026-01-06 03:00:00+00', 'h:3', 'ghost');`)
	if err != nil {
		t.Fatal(err)
	}
	clock := clockwork.NewFakeClockAt(utc(t, "2026-01-08 03:20:00"))
	var log firingLog
	for i := 0; i < 2; i++ {
		sm := queue.NewSyncManager(smOpen(t, e.dsn), queue.WithScheduleClock(clock))
		err := sm.ScheduleCronContext(log.action("s", i), "0 3 * * *", queue.ScheduleName("nightly"),
			queue.ScheduleTimeZone(time.UTC), queue.ScheduleMissed(queue.MissedRunOnce))
		if err != nil {
			t.Fatal(err)
		}
		smStart(t, sm)
	}
	dead := utc(t, "2026-01-08 03:00:00")
	smEventually(t, 30*time.Second, "the dead process's firing to run again", func() bool {
		var done bool
		e.db.QueryRow(`SELECT finished_at IS NOT NULL FROM message_queue_schedule_firing WHERE schedule_name = 'nightly' AND fire_at = $1`, dead).Scan(&done)
		return done
	})
	runs := log.snapshot()
	if len(runs) != 1 || !runs[0].firing.At.Equal(dead) || !runs[0].firing.Rescued {
		t.Fatalf("runs %+v, want one rescued run of the firing at %s", runs, dead)
	}
	var open, rescues int
	if err := e.db.QueryRow(`SELECT count(*) FILTER (WHERE finished_at IS NULL), sum(rescues) FROM message_queue_schedule_firing WHERE schedule_name = 'nightly'`).Scan(&open, &rescues); err != nil {
		t.Fatal(err)
	}
	if open != 2 || rescues != 1 {
		t.Fatalf("%d firings still open and %d rescues, want the live and the unregistered process's firings left open and one rescue", open, rescues)
	}
}

// TestScheduleCatchUpInExclusiveStream: a schedule in an exclusive stream
// catches up at start on the process that takes the stream's lock.
func TestScheduleCatchUpInExclusiveStream(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	if _, err := e.db.Exec(`INSERT INTO message_queue_schedule_firing (schedule_name, fire_at, claimed_by, finished_at)
		VALUES ('hourly', '2026-01-08 10:00:00+00', 'h:1', now())`); err != nil {
		t.Fatal(err)
	}
	clock := clockwork.NewFakeClockAt(utc(t, "2026-01-08 12:30:00"))
	var log firingLog
	sm := queue.NewSyncManager(e.d, queue.WithScheduleClock(clock))
	if err := sm.ConfigureStream("crm", queue.Exclusive()); err != nil {
		t.Fatal(err)
	}
	err := sm.ScheduleCronContext(log.action("crm", 0), "0 * * * *", queue.ScheduleName("hourly"),
		queue.ScheduleTimeZone(time.UTC), queue.ScheduleMissed(queue.MissedRunOnce))
	if err != nil {
		t.Fatal(err)
	}
	smStart(t, sm)
	want := utc(t, "2026-01-08 12:00:00")
	smEventually(t, 30*time.Second, "the catch-up run", func() bool { return log.count("hourly", want) == 1 })
	if r := log.snapshot()[0]; !r.firing.CatchUp {
		t.Fatalf("ran %+v, want a catch-up", r.firing)
	}
}
