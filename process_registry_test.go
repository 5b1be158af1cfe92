package queue_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
)

// processByID returns the registered process with id.
func processByID(t *testing.T, e *smEnv, id string) (queue.Process, bool) {
	t.Helper()
	ps, err := e.tm.ListProcesses(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.ID == id {
			return p, true
		}
	}
	return queue.Process{}, false
}

// liveWith returns the one live process handling name.
func liveWith(t *testing.T, e *smEnv, name string) (queue.Process, bool) {
	t.Helper()
	ps, err := e.tm.ListProcesses(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Live && slices.Contains(p.TaskNames, name) {
			return p, true
		}
	}
	return queue.Process{}, false
}

func okAction() queue.TaskAction {
	return queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		return queue.TaskResultSuccess, ""
	})
}

// TestListProcesses: a running manager is listed live with its host, pid,
// names, streams, schedules and version, renews its heartbeat, and after
// Stop is listed as stopped and no longer live.
func TestListProcesses(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	sm := queue.NewSyncManager(e.d, queue.WithHeartbeat(50*time.Millisecond))
	sm.RegisterTaskHandler(okAction(), "crm.update", queue.InStream("crm"))
	sm.ScheduleCron(scheduledFunc{"reports", func() error { return nil }}, "0 3 * * *", queue.ScheduleName("nightly"))
	smStart(t, sm)
	p, ok := liveWith(t, e, "crm.update")
	if !ok {
		t.Fatal("a started manager is not listed live")
	}
	host, _ := os.Hostname()
	if p.Host != host || p.PID != os.Getpid() || p.Version == "" || p.ID == "" ||
		!slices.Equal(p.Streams, []string{"crm", "reports"}) || !slices.Equal(p.Schedules, []string{"nightly"}) {
		t.Fatalf("listed %+v; want host %s, pid %d, streams [crm reports], schedule nightly and a version", p, host, os.Getpid())
	}
	smEventually(t, 10*time.Second, "a heartbeat after the registration", func() bool {
		q, _ := processByID(t, e, p.ID)
		return q.LastHeartbeat.After(p.LastHeartbeat)
	})
	smStop(t, sm)
	q, ok := processByID(t, e, p.ID)
	if !ok || q.Live || q.Stopped.IsZero() {
		t.Fatalf("after Stop the process is listed as %+v (found %v), want stopped and not live", q, ok)
	}
}

// TestFleetLeavesAnotherServicesTasks: service A handles a.sync, service B
// b.sync. While B is down for a deploy, A's maintenance cancels a name no
// process ever handled but never B's tasks; B, started again, runs them.
func TestFleetLeavesAnotherServicesTasks(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	b := queue.NewSyncManager(smOpen(t, e.dsn))
	b.RegisterTaskHandler(okAction(), "b.sync")
	smStart(t, b)
	if _, ok := liveWith(t, e, "b.sync"); !ok {
		t.Fatal("B is not registered")
	}
	smStop(t, b) // down for a deploy

	var bTasks []int64
	for i := 0; i < 5; i++ {
		bTasks = append(bTasks, e.add(t, "b.sync", "b:"+string(rune('0'+i)), nil))
	}
	a := queue.NewSyncManager(smOpen(t, e.dsn), queue.WithMaintenanceInterval(50*time.Millisecond))
	a.RegisterTaskHandler(okAction(), "a.sync")
	smStart(t, a)
	// Each task of a name nobody handles is cancelled by one maintenance
	// pass; the pass that cancels it also looked at B's older tasks.
	for round := 0; round < 3; round++ {
		id := e.add(t, "nobody.sync", "n", nil)
		smEventually(t, 30*time.Second, "the unknown name's task to be cancelled", func() bool { return e.task(t, id).State == queue.TaskCancelled })
		if msg := e.task(t, id).Message; !strings.Contains(msg, `no handler registered for task name "nobody.sync"`) || !strings.Contains(msg, "no process sharing the queue has handled it") {
			t.Fatalf("cancelled with message %q", msg)
		}
		for _, id := range bTasks {
			if st := e.task(t, id).State; st != queue.TaskReady {
				t.Fatalf("round %d: B's task %d is %s while B is down, want READY", round, id, st)
			}
		}
	}
	b2 := queue.NewSyncManager(smOpen(t, e.dsn))
	b2.RegisterTaskHandler(okAction(), "b.sync")
	smStart(t, b2)
	e.waitCount(t, 30*time.Second, "b.sync", queue.TaskDone, len(bTasks))
}

// TestFleetCancelsAfterGrace: once the last process that handled a name
// has been gone for the grace period, its due tasks are cancelled, with a
// message that says so.
func TestFleetCancelsAfterGrace(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	b := queue.NewSyncManager(smOpen(t, e.dsn))
	b.RegisterTaskHandler(okAction(), "b.sync")
	smStart(t, b)
	smStop(t, b)
	id := e.add(t, "b.sync", "k", nil)
	a := queue.NewSyncManager(smOpen(t, e.dsn), queue.WithMaintenanceInterval(50*time.Millisecond), queue.WithUnhandledGrace(300*time.Millisecond))
	a.RegisterTaskHandler(okAction(), "a.sync")
	smStart(t, a)
	smEventually(t, 30*time.Second, "B's task to be cancelled after the grace period", func() bool { return e.task(t, id).State == queue.TaskCancelled })
	task := e.task(t, id)
	if !strings.Contains(task.Message, "no live process handles it") || !strings.Contains(task.Message, "more than 300ms ago") {
		t.Fatalf("cancelled with message %q", task.Message)
	}
	var gone time.Time
	if err := e.db.QueryRow(`SELECT max(expires_at) FROM message_queue_process WHERE 'b.sync' = ANY (task_names)`).Scan(&gone); err != nil {
		t.Fatal(err)
	}
	if task.FinishedAt.Sub(gone) < 300*time.Millisecond {
		t.Fatalf("cancelled at %s, %s after B went away at %s: within the grace period", task.FinishedAt, task.FinishedAt.Sub(gone), gone)
	}
}

// TestLoneProcessCancelsUnknownName: the original behaviour holds for a
// single process: a due task of a name nobody handles is cancelled.
func TestLoneProcessCancelsUnknownName(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	id := e.add(t, "typo.sync", "k", nil)
	sm := queue.NewSyncManager(e.d, queue.WithMaintenanceInterval(50*time.Millisecond))
	sm.RegisterTaskHandler(okAction(), "job")
	smStart(t, sm)
	smEventually(t, 30*time.Second, "the unknown name's task to be cancelled", func() bool { return e.task(t, id).State == queue.TaskCancelled })
	if msg := e.task(t, id).Message; !strings.HasPrefix(msg, `no handler registered for task name "typo.sync"`) {
		t.Fatalf("message %q", msg)
	}
}

// TestDeadProcessEntriesRemoved: maintenance removes the entry of a process
// gone for longer than the grace period (an hour at least), and keeps a
// recently stopped one.
func TestDeadProcessEntriesRemoved(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	_, err := e.db.Exec(`INSERT INTO message_queue_process (id, host, pid, expires_at, task_names) VALUES
		('long-dead', 'h', 1, now() - interval '2 hours', '{old.sync}'),
		('recent', 'h', 2, now() - interval '1 minute', '{recent.sync}')`)
	if err != nil {
		t.Fatal(err)
	}
	sm := queue.NewSyncManager(e.d, queue.WithMaintenanceInterval(50*time.Millisecond))
	smStart(t, sm)
	smEventually(t, 30*time.Second, "the dead entry to be removed", func() bool {
		_, ok := processByID(t, e, "long-dead")
		return !ok
	})
	if p, ok := processByID(t, e, "recent"); !ok || p.Live {
		t.Fatalf("the recently gone entry is %+v (found %v), want it kept and not live", p, ok)
	}
}

// TestManagerOptionsRejected: bad registry and retention options make Start
// fail with an error naming the option.
func TestManagerOptionsRejected(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	for want, opt := range map[string]queue.ManagerOption{
		"WithHeartbeat":      queue.WithHeartbeat(0),
		"WithUnhandledGrace": queue.WithUnhandledGrace(-time.Second),
		"not a final state":  queue.WithStateRetention(queue.TaskReady, time.Hour),
		"RetainForever":      queue.WithStateRetention(queue.TaskDone, 0),
	} {
		sm := queue.NewSyncManager(e.d, opt)
		err := sm.Start(context.Background())
		if err == nil {
			sm.Stop()
			t.Errorf("%s: Start accepted a bad option", want)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start: %v, want it to mention %s", err, want)
		}
	}
}
