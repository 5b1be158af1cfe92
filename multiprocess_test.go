package queue_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/esync/queue"
)

// TestMultiProcess runs three worker processes (this test binary again,
// running TestMultiProcessWorker) on one database while producers add
// 10,000 tasks on 50 keys, kills one worker with SIGKILL while it runs
// tasks, and then checks the invariants from what the actions recorded:
// every run of a task wrote an event row with its process, task, key, and
// start and end times from the database clock. TestMultiProcessBatch does
// the same with a batch action.
const (
	mpWorkerEnv = "ESYNC_MP_WORKER" // set in worker processes: the DSN
	mpBatchEnv  = "ESYNC_MP_BATCH"  // set in worker processes: run the tasks in batches of this many
	mpName      = "mp-sync"
	mpStream    = "mp"
	mpSchedule  = "mp-schedule"
	mpPeriod    = 300 * time.Millisecond
	mpTasks     = 10000
	mpKeys      = 50
	mpWorkers   = 3
)

const mpTables = `
CREATE TABLE mp_events (
	id bigserial PRIMARY KEY,
	pid int NOT NULL,
	kind text NOT NULL, -- task or schedule
	task_id bigint,
	task_key text,
	started timestamptz NOT NULL,
	ended timestamptz,
	fire_at timestamptz, -- a schedule's firing
	held boolean NOT NULL DEFAULT false); -- the run hangs until its process is killed
CREATE INDEX ON mp_events (task_key, started);
CREATE INDEX ON mp_events (task_id);
CREATE TABLE mp_errors (pid int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(), err text NOT NULL);
-- Processes whose next runs hang (the one the test kills in the middle of
-- a run).
CREATE TABLE mp_hold (pid int PRIMARY KEY);`

// TestMultiProcessWorker is one worker process of TestMultiProcess; run
// directly it skips. It works until its standard input closes, then stops
// gracefully.
func TestMultiProcessWorker(t *testing.T) {
	dsn := os.Getenv(mpWorkerEnv)
	if dsn == "" {
		t.Skip("a worker process of TestMultiProcess")
	}
	d, err := queue.OpenPostgres(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	db := d.DB()
	pid := os.Getpid()
	sm := queue.NewSyncManager(d,
		queue.WithLease(2*time.Second),
		queue.WithMaintenanceInterval(200*time.Millisecond),
		queue.WithPollInterval(200*time.Millisecond),
		queue.WithStopTimeout(20*time.Second),
		queue.WithBatchSize(2)) // concurrency 4: two claim loops per process
	sm.SetErrorHandler(func(err error) {
		fmt.Fprintf(os.Stderr, "worker %d: %v\n", pid, err)
		db.Exec(`INSERT INTO mp_errors (pid, err) VALUES ($1, $2)`, pid, err.Error())
	})
	if err := sm.ConfigureStream(mpStream, queue.WithConcurrency(4)); err != nil {
		t.Fatal(err)
	}
	if size, _ := strconv.Atoi(os.Getenv(mpBatchEnv)); size > 0 {
		err = sm.RegisterBatchHandler(mpBatchAction(db, pid), mpName, size, queue.InStream(mpStream))
	} else {
		err = sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var ev int64
			var hold bool
			err := db.QueryRowContext(ctx, `
INSERT INTO mp_events (pid, kind, task_id, task_key, started)
VALUES ($1, 'task', $2, $3, clock_timestamp()) RETURNING id, EXISTS (SELECT 1 FROM mp_hold WHERE pid = $1)`,
				pid, task.ID, task.Key).Scan(&ev, &hold)
			if err != nil {
				return queue.TaskResultRetryFailure, queue.TaskMessage(err.Error())
			}
			if hold {
				mpHang(db, ev)
			}
			time.Sleep(time.Duration(2+rand.IntN(5)) * time.Millisecond)
			if _, err := db.ExecContext(ctx, `UPDATE mp_events SET ended = clock_timestamp() WHERE id = $1`, ev); err != nil {
				return queue.TaskResultRetryFailure, queue.TaskMessage(err.Error())
			}
			return queue.TaskResultSuccess, ""
		}), mpName, queue.InStream(mpStream))
	}
	if err != nil {
		t.Fatal(err)
	}
	err = sm.ScheduleContext(ctxSchedule{"mp-schedule", func(ctx context.Context) error {
		f, _ := queue.FiringFrom(ctx)
		_, err := db.ExecContext(ctx, `INSERT INTO mp_events (pid, kind, started, ended, fire_at) VALUES ($1, 'schedule', clock_timestamp(), clock_timestamp(), $2)`, pid, f.At)
		return err
	}}, mpPeriod, queue.ScheduleName(mpSchedule))
	if err != nil {
		t.Fatal(err)
	}
	if err := sm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, os.Stdin)
	if err := sm.Stop(); err != nil {
		t.Fatalf("worker %d stop: %v", pid, err)
	}
}

// mpWorker is a running worker process.
type mpWorker struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *lockedBuffer
	exited chan struct{} // closed when the process has exited
	err    error         // how it exited, once exited is closed
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// mpHang marks the runs of events evs held and blocks until the process is
// killed: the test kills a worker in the middle of these runs.
func mpHang(db *sql.DB, evs ...int64) {
	if _, err := db.Exec(`UPDATE mp_events SET held = true WHERE id = ANY($1)`, pq.Array(evs)); err != nil {
		fmt.Fprintf(os.Stderr, "mark held: %v\n", err)
	}
	select {}
}

// mpBatchAction records one event per task of a call, as the task action
// does for its one task: every task of the batch starts and ends with the
// call.
func mpBatchAction(db *sql.DB, pid int) queue.BatchAction {
	return queue.BatchActionFunc(func(ctx context.Context, tasks []queue.Task) []queue.BatchResult {
		results := make([]queue.BatchResult, len(tasks))
		fail := func(err error) []queue.BatchResult {
			for i := range results {
				results[i] = queue.BatchResult{Result: queue.TaskResultRetryFailure, Message: queue.TaskMessage(err.Error())}
			}
			return results
		}
		ids, keys := make([]int64, len(tasks)), make([]string, len(tasks))
		for i, task := range tasks {
			ids[i], keys[i] = task.ID, task.Key
		}
		dbCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var evs []int64
		var hold bool
		rows, err := db.QueryContext(dbCtx, `
INSERT INTO mp_events (pid, kind, task_id, task_key, started)
SELECT $1, 'task', id, key, clock_timestamp() FROM unnest($2::bigint[], $3::text[]) AS t (id, key)
RETURNING id, EXISTS (SELECT 1 FROM mp_hold WHERE pid = $1)`,
			pid, pq.Array(ids), pq.Array(keys))
		if err != nil {
			return fail(err)
		}
		for rows.Next() {
			var ev int64
			if err := rows.Scan(&ev, &hold); err != nil {
				rows.Close()
				return fail(err)
			}
			evs = append(evs, ev)
		}
		if err := rows.Err(); err != nil {
			return fail(err)
		}
		if hold {
			mpHang(db, evs...)
		}
		time.Sleep(time.Duration(2+rand.IntN(5)) * time.Millisecond)
		if _, err := db.ExecContext(dbCtx, `UPDATE mp_events SET ended = clock_timestamp() WHERE id = ANY($1)`, pq.Array(evs)); err != nil {
			return fail(err)
		}
		for i := range results {
			results[i] = queue.BatchResult{Result: queue.TaskResultSuccess}
		}
		return results
	})
}

func startMPWorker(t *testing.T, dsn string, batch int) *mpWorker {
	t.Helper()
	return startWorkerProcess(t, "TestMultiProcessWorker", mpWorkerEnv+"="+dsn, fmt.Sprintf("%s=%d", mpBatchEnv, batch))
}

func TestMultiProcess(t *testing.T) {
	testMultiProcess(t, 0)
}

// TestMultiProcessBatch is TestMultiProcess with a batch action taking up
// to 8 tasks a call: each task of a batch keeps its own lease, key and
// result, and the invariants hold as for single runs.
func TestMultiProcessBatch(t *testing.T) {
	testMultiProcess(t, 8)
}

func testMultiProcess(t *testing.T, batch int) {
	if testing.Short() {
		t.Skip("starts three processes and runs 10,000 tasks")
	}
	e := newSMEnv(t)
	if _, err := e.db.ExecContext(e.ctx, mpTables); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	workers := make([]*mpWorker, mpWorkers)
	for i := range workers {
		workers[i] = startMPWorker(t, e.dsn, batch)
	}
	defer func() {
		if t.Failed() {
			for i, w := range workers {
				t.Logf("worker %d (pid %d) output:\n%s", i, w.cmd.Process.Pid, lastLinesOf(w.out.String(), 40))
			}
		}
	}()

	// Producers add tasks throughout, in small batches on random keys.
	var produced atomic.Int64
	var prodWG sync.WaitGroup
	prodErr := make(chan error, 4)
	for p := 0; p < 4; p++ {
		prodWG.Add(1)
		go func() {
			defer prodWG.Done()
			for b := 0; b < mpTasks/4/25; b++ {
				specs := make([]queue.TaskSpec, 25)
				for i := range specs {
					specs[i] = queue.TaskSpec{Name: mpName, Key: fmt.Sprintf("key%02d", rand.IntN(mpKeys)), Data: map[string]any{"p": p, "b": b, "i": i}}
				}
				if _, err := e.tm.AddMany(e.ctx, specs); err != nil {
					prodErr <- err
					return
				}
				produced.Add(25)
				time.Sleep(40 * time.Millisecond)
			}
		}()
	}

	// Kill worker 0 in the middle of a run, once a third of the tasks are
	// in: its next runs hang (mp_hold) until it is killed.
	victim := workers[0]
	victimPID := victim.cmd.Process.Pid
	smEventually(t, time.Minute, "a third of the tasks to be added", func() bool { return produced.Load() >= mpTasks/3 })
	if _, err := e.db.ExecContext(e.ctx, `INSERT INTO mp_hold (pid) VALUES ($1)`, victimPID); err != nil {
		t.Fatal(err)
	}
	smEventually(t, time.Minute, "worker 0 to be in the middle of a run", func() bool {
		var n int
		if err := e.db.QueryRowContext(e.ctx, `SELECT count(*) FROM mp_events WHERE pid = $1 AND held`, victimPID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	<-victim.exited
	var killedAtDB time.Time
	if err := e.db.QueryRowContext(e.ctx, `SELECT clock_timestamp()`).Scan(&killedAtDB); err != nil {
		t.Fatal(err)
	}
	// Tasks the victim held when it died: still IN PROGRESS, last run by it.
	heldByVictim := mpIDs(t, e, `
SELECT q.id FROM message_queue q
WHERE q.state = 'IN PROGRESS'
	AND (SELECT pid FROM mp_events v WHERE v.task_id = q.id ORDER BY v.started DESC LIMIT 1) = $1`, victimPID)
	t.Logf("killed worker 0 (pid %d) at %s after %d tasks were added; %d of its tasks were in progress",
		victimPID, killedAtDB.Format("15:04:05.000"), produced.Load(), len(heldByVictim))

	prodWG.Wait()
	close(prodErr)
	for err := range prodErr {
		t.Fatalf("producer: %v", err)
	}
	addedAt := time.Now()
	smEventually(t, 90*time.Second, "every task to be finished", func() bool {
		var n int
		if err := e.db.QueryRowContext(e.ctx, `SELECT count(*) FROM message_queue WHERE state IN ('READY', 'RETRY', 'IN PROGRESS')`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	finishedAt := time.Now()
	// Let the schedule run a few more periods on the survivors.
	smEventually(t, 30*time.Second, "scheduled runs after the kill", func() bool {
		var n int
		err := e.db.QueryRowContext(e.ctx, `SELECT count(*) FROM mp_events WHERE kind = 'schedule' AND started > now() - $1::interval`,
			fmt.Sprintf("%d milliseconds", time.Since(killedAt).Milliseconds())).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n >= 3
	})
	for _, w := range workers[1:] {
		w.stdin.Close()
	}
	for i, w := range workers[1:] {
		select {
		case <-w.exited:
			if w.err != nil {
				t.Errorf("worker %d: %v", i+1, w.err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("worker %d did not stop within 60s of its stdin closing", i+1)
		}
	}
	t.Logf("added in %s, all finished %s later, workers stopped %s later",
		addedAt.Sub(began).Round(time.Millisecond), finishedAt.Sub(addedAt).Round(time.Millisecond), time.Since(finishedAt).Round(time.Millisecond))

	mpCheck(t, e, victimPID, heldByVictim)
}

func mpCheck(t *testing.T, e *smEnv, victimPID int, heldByVictim []int64) {
	t.Helper()
	var total, runs, unfinishedRuns, pids int
	if err := e.db.QueryRowContext(e.ctx, `SELECT
	(SELECT count(*) FROM message_queue),
	(SELECT count(*) FROM mp_events WHERE kind = 'task'),
	(SELECT count(*) FROM mp_events WHERE kind = 'task' AND ended IS NULL),
	(SELECT count(DISTINCT pid) FROM mp_events WHERE kind = 'task')`).Scan(&total, &runs, &unfinishedRuns, &pids); err != nil {
		t.Fatal(err)
	}
	counts := e.counts(t, mpName)
	t.Logf("%d tasks: %v; %d runs (%d never ended) in %d processes", total, counts, runs, unfinishedRuns, pids)
	if total != mpTasks {
		t.Fatalf("%d tasks in the queue, want %d", total, mpTasks)
	}
	if pids != mpWorkers {
		t.Errorf("tasks ran in %d processes, want %d", pids, mpWorkers)
	}

	// Invariant 1: no two runs of one key overlap in time. A run that never
	// ended (its process was killed) has no end to compare.
	if bad := mpRows(t, e, `
SELECT format('key %s: task %s [pid %s, %s .. %s] and task %s [pid %s, %s .. %s]',
	a.task_key, a.task_id, a.pid, a.started, a.ended, b.task_id, b.pid, b.started, b.ended)
FROM mp_events a JOIN mp_events b ON b.task_key = a.task_key AND b.id > a.id
WHERE a.kind = 'task' AND b.kind = 'task' AND a.ended IS NOT NULL AND b.ended IS NOT NULL
	AND a.started < b.ended AND b.started < a.ended
LIMIT 10`); len(bad) > 0 {
		t.Errorf("invariant 1: runs of one key overlapped:\n%s", strings.Join(bad, "\n"))
	}

	// Invariant 2: per key, the tasks started in increasing id order (a task
	// may start again after its worker died).
	if bad := mpRows(t, e, `
SELECT format('key %s: task %s started at %s after task %s', task_key, task_id, started, prev)
FROM (SELECT task_key, task_id, started, lag(task_id) OVER (PARTITION BY task_key ORDER BY started, id) AS prev
	FROM mp_events WHERE kind = 'task') x
WHERE task_id < prev
LIMIT 10`); len(bad) > 0 {
		t.Errorf("invariant 2: an older task ran after a newer one of its key:\n%s", strings.Join(bad, "\n"))
	}

	// Invariant 3: the newest task of each key ran and is DONE; every
	// superseded task points to a DONE task of its key with a higher id.
	if bad := mpRows(t, e, `
SELECT format('key %s: newest task %s is %s with %s runs', q.task_key, q.id, q.state,
	(SELECT count(*) FROM mp_events v WHERE v.task_id = q.id))
FROM message_queue q
WHERE q.id IN (SELECT max(id) FROM message_queue GROUP BY task_key)
	AND (q.state <> 'DONE' OR NOT EXISTS (SELECT 1 FROM mp_events v WHERE v.task_id = q.id AND v.ended IS NOT NULL))
LIMIT 10`); len(bad) > 0 {
		t.Errorf("invariant 3: the newest task of a key did not run:\n%s", strings.Join(bad, "\n"))
	}
	// A superseded task points to a newer task of its key: the one that
	// ran, or one that was itself superseded (as it was added, or after its
	// run was lost with the killed process). Ids grow along the chain and
	// every task ends DONE or SUPERSEDED (invariant 5, below), so each
	// chain ends at a DONE task.
	if bad := mpRows(t, e, `
SELECT format('task %s (key %s) superseded by %s (key %s, %s)', s.id, s.task_key, s.superseded_by, w.task_key, w.state)
FROM message_queue s LEFT JOIN message_queue w ON w.id = s.superseded_by
WHERE s.state = 'SUPERSEDED'
	AND (w.id IS NULL OR w.task_key <> s.task_key OR w.id <= s.id OR w.state NOT IN ('DONE', 'SUPERSEDED'))
LIMIT 10`); len(bad) > 0 {
		t.Errorf("invariant 3: a superseded task does not lead to a newer DONE task of its key:\n%s", strings.Join(bad, "\n"))
	}
	chains := mpRows(t, e, `
SELECT format('%s superseded by %s (%s, %s attempts) superseded by %s', s.id, w.id, w.state, w.attempts, w.superseded_by)
FROM message_queue s JOIN message_queue w ON w.id = s.superseded_by
WHERE s.state = 'SUPERSEDED' AND w.state <> 'DONE'
ORDER BY s.id`)
	if len(chains) > 0 {
		t.Logf("%d superseded tasks point to a task that was itself superseded, e.g. %s", len(chains), chains[0])
	}
	// Every DONE task ran to an end; a superseded task ran only if the
	// killed process was running it.
	if bad := mpRows(t, e, `
SELECT format('task %s is DONE without a finished run', q.id)
FROM message_queue q
WHERE q.state = 'DONE' AND NOT EXISTS (SELECT 1 FROM mp_events v WHERE v.task_id = q.id AND v.ended IS NOT NULL)
LIMIT 10`); len(bad) > 0 {
		t.Errorf("a task is DONE but never ran:\n%s", strings.Join(bad, "\n"))
	}
	if bad := mpRows(t, e, `
SELECT format('task %s is SUPERSEDED but ran in pid %s', q.id, v.pid)
FROM message_queue q JOIN mp_events v ON v.task_id = q.id
WHERE q.state = 'SUPERSEDED' AND v.pid <> $1
LIMIT 10`, victimPID); len(bad) > 0 {
		t.Errorf("a superseded task ran in a live worker:\n%s", strings.Join(bad, "\n"))
	}

	// Invariant 5: nothing lost.
	if n := total - counts[queue.TaskDone] - counts[queue.TaskSuperseded]; n != 0 {
		t.Errorf("invariant 5: %d tasks ended neither DONE nor SUPERSEDED: %v", n, counts)
	}

	// The killed process's tasks: runs that never ended, and tasks it held
	// when it died. Each was finished by the others (after its lease
	// expired) or superseded.
	neverEnded := mpIDs(t, e, `SELECT task_id FROM mp_events WHERE pid = $1 AND kind = 'task' AND ended IS NULL`, victimPID)
	if len(neverEnded) == 0 && len(heldByVictim) == 0 {
		t.Fatalf("the kill caught no task in flight; nothing to check about rescue")
	}
	t.Logf("killed process: %d runs never ended %v; %d tasks held at death %v", len(neverEnded), neverEnded, len(heldByVictim), heldByVictim)
	for _, id := range append(append([]int64{}, neverEnded...), heldByVictim...) {
		task := e.task(t, id)
		if task.State != queue.TaskDone && task.State != queue.TaskSuperseded {
			t.Errorf("task %d of the killed process ended %s", id, task.State)
		}
	}
	for _, id := range neverEnded {
		task := e.task(t, id)
		var rerun int
		if err := e.db.QueryRowContext(e.ctx, `SELECT count(*) FROM mp_events WHERE task_id = $1 AND pid <> $2 AND ended IS NOT NULL`, id, victimPID).Scan(&rerun); err != nil {
			t.Fatal(err)
		}
		if task.State == queue.TaskDone && (rerun == 0 || task.Attempt < 2) {
			t.Errorf("task %d never returned in the killed process, yet is DONE with %d attempts and %d runs elsewhere", id, task.Attempt, rerun)
		}
	}

	// The schedule: each firing (a multiple of the period) ran once between
	// the processes, and none from the first to the last was skipped; a
	// firing claimed without a recorded run was the killed process's.
	var schedRuns int
	if err := e.db.QueryRowContext(e.ctx, `SELECT count(*) FROM mp_events WHERE kind = 'schedule'`).Scan(&schedRuns); err != nil {
		t.Fatal(err)
	}
	if schedRuns < 5 {
		t.Errorf("the schedule ran %d times, want several", schedRuns)
	}
	if bad := mpRows(t, e, `
SELECT format('firing %s ran %s times, in pids %s', fire_at, count(*), string_agg(pid::text, ', '))
FROM mp_events WHERE kind = 'schedule' GROUP BY fire_at HAVING count(*) > 1 LIMIT 10`); len(bad) > 0 {
		t.Errorf("a firing ran twice:\n%s", strings.Join(bad, "\n"))
	}
	if bad := mpRows(t, e, `
SELECT format('firing %s was skipped', s)
FROM generate_series((SELECT min(fire_at) FROM message_queue_schedule_firing), (SELECT max(fire_at) FROM message_queue_schedule_firing), $1::interval) s
WHERE s NOT IN (SELECT fire_at FROM message_queue_schedule_firing)
LIMIT 10`, fmt.Sprintf("%d milliseconds", mpPeriod.Milliseconds())); len(bad) > 0 {
		t.Errorf("firings were skipped:\n%s", strings.Join(bad, "\n"))
	}
	if bad := mpRows(t, e, `
SELECT format('firing %s claimed by %s has no run', f.fire_at, f.claimed_by)
FROM message_queue_schedule_firing f
WHERE NOT EXISTS (SELECT 1 FROM mp_events v WHERE v.kind = 'schedule' AND v.fire_at = f.fire_at)
	AND f.claimed_by NOT LIKE '%:' || $1
LIMIT 10`, victimPID); len(bad) > 0 {
		t.Errorf("a firing claimed by a live process did not run:\n%s", strings.Join(bad, "\n"))
	}
	var byProcess []string
	for _, r := range mpRows(t, e, `SELECT format('%s:%s', pid, count(*)) FROM mp_events WHERE kind = 'schedule' GROUP BY pid ORDER BY pid`) {
		byProcess = append(byProcess, r)
	}
	t.Logf("%d scheduled runs, per process %v", schedRuns, byProcess)
	if errs := mpRows(t, e, `SELECT format('%s pid %s: %s', to_char(at, 'HH24:MI:SS.MS'), pid, err) FROM mp_errors ORDER BY at LIMIT 20`); len(errs) > 0 {
		t.Logf("errors the workers reported:\n%s", strings.Join(errs, "\n"))
	}
}

// mpRows returns the first column of a query's rows as text.
func mpRows(t *testing.T, e *smEnv, query string, args ...any) []string {
	t.Helper()
	rows, err := e.db.QueryContext(e.ctx, query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s.String)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// mpIDs returns the ids a query yields.
func mpIDs(t *testing.T, e *smEnv, query string, args ...any) []int64 {
	t.Helper()
	var ids []int64
	if err := e.db.QueryRowContext(e.ctx, `SELECT coalesce(array_agg(id), '{}') FROM (`+query+`) AS x(id)`, args...).Scan(pq.Array(&ids)); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return ids
}

func lastLinesOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
