package queue_test

import (
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esync/queue"
)

// scheduledFunc is a ScheduledAction made of a function and a stream.
type scheduledFunc struct {
	stream string
	do     func() error
}

func (s scheduledFunc) Do() error      { return s.do() }
func (s scheduledFunc) Stream() string { return s.stream }

// TestScheduleSharesStreamWithTasks: a scheduled action every 50ms and many
// slow-ish tasks in one stream of concurrency 1 never overlap, and the
// schedule runs several times while the tasks are being worked through.
func TestScheduleSharesStreamWithTasks(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	const tasks = 80
	var m meter
	var finished atomic.Int64
	var schedRuns, schedRunsDuringTasks atomic.Int64
	sm := queue.NewSyncManager(e.d)
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		defer m.enter()()
		time.Sleep(10 * time.Millisecond)
		finished.Add(1)
		return queue.TaskResultSuccess, ""
	}), "sync", queue.InStream("crm"))
	err := sm.Schedule(scheduledFunc{"crm", func() error {
		defer m.enter()()
		schedRuns.Add(1)
		if finished.Load() < tasks {
			schedRunsDuringTasks.Add(1)
		}
		time.Sleep(5 * time.Millisecond)
		return nil
	}}, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	e.addDistinct(t, "sync", tasks)
	smStart(t, sm)
	e.waitCount(t, time.Minute, "sync", queue.TaskDone, tasks)
	smEventually(t, 20*time.Second, "three more scheduled runs", func() bool { return schedRuns.Load() >= schedRunsDuringTasks.Load()+3 })
	if got := m.most.Load(); got != 1 {
		t.Fatalf("%d things ran at once in stream crm (concurrency 1), want 1", got)
	}
	if got := schedRunsDuringTasks.Load(); got < 3 {
		t.Fatalf("the schedule ran %d times while %d tasks of its stream were worked through, want several", got, tasks)
	}
}

// TestScheduledPanicReported: a panic in a scheduled action reaches the
// error handler with its text, and the schedule keeps running.
func TestScheduledPanicReported(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	var runs atomic.Int64
	var log errorLog
	sm := queue.NewSyncManager(e.d)
	sm.SetErrorHandler(log.handle)
	sm.Schedule(scheduledFunc{"s", func() error {
		runs.Add(1)
		panic("boom in schedule 91c2")
	}}, 50*time.Millisecond)
	smStart(t, sm)
	smEventually(t, 20*time.Second, "two scheduled runs", func() bool { return runs.Load() >= 2 })
	smEventually(t, 20*time.Second, "the panic to be reported", func() bool { return log.find("boom in schedule 91c2") != nil })
	if err := log.find("boom in schedule 91c2"); !strings.Contains(err.Error(), "panic") {
		t.Fatalf("reported %q, want it to say panic", err)
	}
}

// TestScheduledErrorReported: an error returned by a scheduled action
// reaches the error handler.
func TestScheduledErrorReported(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	var log errorLog
	sm := queue.NewSyncManager(e.d)
	sm.SetErrorHandler(log.handle)
	sm.Schedule(scheduledFunc{"s", func() error { return errString("reconcile failed 55d1") }}, 50*time.Millisecond, queue.ScheduleName("reconcile"))
	smStart(t, sm)
	smEventually(t, 20*time.Second, "the error to be reported", func() bool { return log.find("reconcile failed 55d1") != nil })
	if err := log.find("reconcile failed 55d1"); !strings.Contains(err.Error(), "reconcile") {
		t.Fatalf("reported %q, want the schedule's name in it", err)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// TestScheduleOncePerPeriodAcrossManagers: two managers on one database
// with the same interval schedule on the real clock: every slot (a multiple
// of the period) from the first run to the last ran once, on one of them.
func TestScheduleOncePerPeriodAcrossManagers(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	const period = 200 * time.Millisecond
	var log firingLog
	for i := 0; i < 2; i++ {
		sm := queue.NewSyncManager(smOpen(t, e.dsn))
		if err := sm.ScheduleContext(log.action("s", i), period, queue.ScheduleName("shared")); err != nil {
			t.Fatal(err)
		}
		smStart(t, sm)
	}
	smEventually(t, 30*time.Second, "ten scheduled runs", func() bool { return len(log.of("shared")) >= 10 })
	all := log.of("shared")
	sort.Slice(all, func(i, j int) bool { return all[i].Before(all[j]) })
	// The newest slots may still be on their way from a slower manager:
	// check up to two periods before the newest.
	limit := all[len(all)-1].Add(-2 * period)
	var got, want []time.Time
	for _, at := range all {
		if !at.After(limit) {
			got = append(got, at)
		}
	}
	for at := got[0]; !at.After(limit); at = at.Add(period) {
		want = append(want, at)
	}
	if len(got) != len(want) {
		t.Fatalf("ran slots\n  %s\nwant each of\n  %s\nonce", fmtTimes(got), fmtTimes(want))
	}
	for i := range got {
		if !got[i].Equal(want[i]) || got[i].Truncate(period) != got[i] {
			t.Fatalf("ran slots\n  %s\nwant each of\n  %s\nonce", fmtTimes(got), fmtTimes(want))
		}
	}
	byManager := map[int]int{}
	for _, r := range log.snapshot() {
		byManager[r.manager]++
	}
	t.Logf("%d slots, per manager %v", len(got), byManager)
}

// TestScheduleRejectsBadSpecs: a non-positive period, a bad cron spec and a
// duplicate name are refused.
func TestScheduleRejectsBadSpecs(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	sm := queue.NewSyncManager(e.d)
	act := scheduledFunc{"s", func() error { return nil }}
	if err := sm.Schedule(act, 0); err == nil {
		t.Error("zero period accepted")
	}
	if err := sm.ScheduleCron(act, "not a cron spec"); err == nil {
		t.Error("bad cron spec accepted")
	}
	if err := sm.Schedule(scheduledFunc{"", act.do}, time.Second); err == nil {
		t.Error("empty stream accepted")
	}
	if err := sm.ScheduleCron(act, "*/5 * * * *"); err != nil {
		t.Fatal(err)
	}
	if err := sm.Schedule(act, time.Second, queue.ScheduleName("x")); err != nil {
		t.Fatal(err)
	}
	if err := sm.Schedule(act, 2*time.Second, queue.ScheduleName("x")); err == nil {
		t.Error("duplicate schedule name accepted")
	}
}
