package queue_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// TestStartWhileDatabaseDown: a manager starts while its PostgreSQL is
// stopped and, once the server is back, runs the tasks added then.
func TestStartWhileDatabaseDown(t *testing.T) {
	t.Parallel()
	srv := queuetest.NewServer(t)
	dsn := srv.NewDSN(t)
	d := smOpen(t, dsn)
	ctx := context.Background()
	requireNoError(t, d.Migrate(ctx))
	requireNoError(t, srv.Stop(ctx))
	sm := queue.NewSyncManager(d, queue.WithPollInterval(50*time.Millisecond))
	sm.SetErrorHandler(func(error) {})
	ran := make(chan struct{})
	var once sync.Once
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
		once.Do(func() { close(ran) })
		return queue.TaskResultSuccess, ""
	}), "job")
	startCtx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	requireNoError(t, sm.Start(startCtx))
	defer smStop(t, sm)
	requireNoError(t, srv.Start(ctx))
	tm := queue.NewTaskManager(smOpen(t, dsn))
	if _, err := tm.Add(ctx, "job", "k", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
	case <-time.After(30 * time.Second):
		t.Fatal("the task added after the server came back never ran")
	}
}

// TestOutageMultiProcess: three worker processes (this test binary again,
// running TestOutageWorker) with a 1s lease work through tasks that
// producers keep adding while PostgreSQL is stopped, as a crash would stop
// it, for longer than two leases, and started again. Afterwards nothing is
// lost, no key ran twice at once, no task ran twice, and no result was
// reported lost. ESYNC_OUTAGE and ESYNC_OUTAGE_LEASE change the outage's
// length (default 2.5s) and the lease (default 1s).
func TestOutageMultiProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL and three processes")
	}
	t.Parallel()
	outage := envDuration(t, "ESYNC_OUTAGE", 2500*time.Millisecond)
	lease := envDuration(t, "ESYNC_OUTAGE_LEASE", time.Second)
	srv := queuetest.NewServer(t)
	dsn := srv.NewDSN(t)
	ctx := context.Background()
	d := smOpen(t, dsn)
	requireNoError(t, d.Migrate(ctx))
	tm := queue.NewTaskManager(d)
	dir := t.TempDir()
	var workers []*mpWorker
	for i := range 3 {
		workers = append(workers, startWorkerProcess(t, "TestOutageWorker",
			outageWorkerEnv+"="+dsn, "ESYNC_OUTAGE_LOG="+filepath.Join(dir, fmt.Sprintf("w%d.log", i)),
			"ESYNC_OUTAGE_LEASE="+lease.String()))
	}
	defer func() {
		if t.Failed() {
			for i, w := range workers {
				t.Logf("worker %d output:\n%s", i, lastLinesOf(w.out.String(), 30))
			}
		}
	}()

	// Producers add batches on 30 keys throughout, retrying through the
	// outage.
	const batches, batch = 120, 10
	var mu sync.Mutex
	var added []int64
	var produced atomic.Int64
	var wg sync.WaitGroup
	for p := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < batches/2; b++ {
				specs := make([]queue.TaskSpec, batch)
				for i := range specs {
					specs[i] = queue.TaskSpec{Name: "outage", Key: fmt.Sprintf("key%02d", rand.IntN(30)), Data: map[string]any{"p": p, "b": b}}
				}
				for {
					ids, err := tm.AddMany(ctx, specs)
					if err == nil {
						mu.Lock()
						added = append(added, ids...)
						mu.Unlock()
						produced.Add(batch)
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	smEventually(t, time.Minute, "a third of the tasks to be added", func() bool { return produced.Load() >= batches*batch/3 })
	requireNoError(t, srv.Stop(ctx))
	time.Sleep(outage) // the outage itself
	requireNoError(t, srv.Start(ctx))
	back := time.Now()
	wg.Wait()
	smEventually(t, 2*time.Minute, "every task to be finished", func() bool {
		n, err := tm.Count(ctx, queue.TaskFilter{States: []queue.TaskState{queue.TaskReady, queue.TaskRetry, queue.TaskInProgress}})
		return err == nil && n == 0
	})
	for _, w := range workers {
		w.stdin.Close()
	}
	for i, w := range workers {
		select {
		case <-w.exited:
		case <-time.After(time.Minute):
			t.Fatalf("worker %d did not stop", i)
		}
		if w.err != nil {
			t.Fatalf("worker %d: %v", i, w.err)
		}
		if out := w.out.String(); strings.Contains(out, "lease lost") || strings.Contains(out, "discarded") {
			t.Errorf("worker %d reported a lost result:\n%s", i, lastLinesOf(out, 20))
		}
	}

	runs := readOutageRuns(t, dir)
	perTask := map[int64]int{}
	perKey := map[string][]outageRun{}
	firstAfter := time.Duration(-1)
	for _, r := range runs {
		perTask[r.id]++
		perKey[r.key] = append(perKey[r.key], r)
		if after := r.start.Sub(back); after >= 0 && (firstAfter < 0 || after < firstAfter) {
			firstAfter = after
		}
	}
	twice := 0
	for id, n := range perTask {
		if n > 1 {
			twice++
			t.Errorf("task %d ran %d times", id, n)
		}
	}
	for key, rs := range perKey {
		sort.Slice(rs, func(i, j int) bool { return rs[i].start.Before(rs[j].start) })
		for i := 1; i < len(rs); i++ {
			if rs[i].start.Before(rs[i-1].end) {
				t.Errorf("key %s: task %d started at %s while task %d ran until %s", key, rs[i].id, rs[i].start.Format("15:04:05.000000"), rs[i-1].id, rs[i-1].end.Format("15:04:05.000000"))
			}
		}
	}
	mu.Lock()
	for _, id := range added {
		task, err := tm.Get(ctx, id)
		requireNoError(t, err)
		if task.State != queue.TaskDone && task.State != queue.TaskSuperseded {
			t.Errorf("task %d ended %s %q", id, task.State, task.Message)
		}
	}
	mu.Unlock()
	t.Logf("outage %s, lease %s: %d tasks added, %d runs, %d tasks ran more than once; first run %s after the server was back",
		outage, lease, len(added), len(runs), twice, firstAfter.Round(time.Millisecond))
}

const outageWorkerEnv = "ESYNC_OUTAGE_WORKER" // set in worker processes: the DSN

// TestOutageWorker is one worker process of TestOutageMultiProcess; run
// directly it skips. Each run of an action appends a line to its log file.
func TestOutageWorker(t *testing.T) {
	dsn := os.Getenv(outageWorkerEnv)
	if dsn == "" {
		t.Skip("a worker process of TestOutageMultiProcess")
	}
	lease, err := time.ParseDuration(os.Getenv("ESYNC_OUTAGE_LEASE"))
	requireNoError(t, err)
	logFile, err := os.OpenFile(os.Getenv("ESYNC_OUTAGE_LOG"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	requireNoError(t, err)
	defer logFile.Close()
	d, err := queue.OpenPostgres(dsn)
	requireNoError(t, err)
	defer d.Close()
	pid := os.Getpid()
	sm := queue.NewSyncManager(d, queue.WithLease(lease), queue.WithMaintenanceInterval(200*time.Millisecond),
		queue.WithPollInterval(100*time.Millisecond), queue.WithStopTimeout(20*time.Second), queue.WithBatchSize(2))
	sm.SetErrorHandler(func(err error) { fmt.Fprintf(os.Stderr, "worker %d: %v\n", pid, err) })
	requireNoError(t, sm.ConfigureStream("outage", queue.WithConcurrency(4)))
	var mu sync.Mutex
	err = sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		start := time.Now()
		time.Sleep(time.Duration(2+rand.IntN(5)) * time.Millisecond)
		mu.Lock()
		fmt.Fprintf(logFile, "%d %s %d %d\n", task.ID, task.Key, start.UnixNano(), time.Now().UnixNano())
		mu.Unlock()
		return queue.TaskResultSuccess, ""
	}), "outage", queue.WithRetryPolicy(queue.ConstantBackoff(50*time.Millisecond)))
	requireNoError(t, err)
	requireNoError(t, sm.Start(context.Background()))
	bufio.NewReader(os.Stdin).WriteTo(discard{})
	if err := sm.Stop(); err != nil {
		t.Fatalf("worker %d stop: %v", pid, err)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// outageRun is one run of an action, read from a worker's log.
type outageRun struct {
	id         int64
	key        string
	start, end time.Time
}

func readOutageRuns(t *testing.T, dir string) []outageRun {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	var out []outageRun
	for _, f := range files {
		b, err := os.ReadFile(f)
		requireNoError(t, err)
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if line == "" {
				continue
			}
			var r outageRun
			var s, e int64
			if _, err := fmt.Sscanf(line, "%d %s %d %d", &r.id, &r.key, &s, &e); err != nil {
				t.Fatalf("%s: %q: %v", f, line, err)
			}
			r.start, r.end = time.Unix(0, s), time.Unix(0, e)
			out = append(out, r)
		}
	}
	return out
}

// envDuration reads a duration from the environment, or gives def.
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

// startWorkerProcess runs this test binary again with only the named test,
// with env added to its environment; closing its stdin asks it to stop.
func startWorkerProcess(t *testing.T, test string, env ...string) *mpWorker {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.timeout=5m", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	w := &mpWorker{cmd: cmd, out: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = w.out, w.out
	var err error
	if w.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.err = cmd.Wait(); close(w.exited) }()
	t.Cleanup(func() {
		select {
		case <-w.exited:
		default:
			cmd.Process.Kill()
			<-w.exited
		}
	})
	return w
}
