package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// workerSecret is a secret the tests put in the environment; it must never
// appear in what the worker prints.
const workerSecret = "tok-SECRET-5b1c9e"

// workerEnv is a migrated queue and a directory for configs and scripts.
type workerEnv struct {
	t   *testing.T
	bin string
	dsn string
	dir string
	tm  *queue.TaskManager
}

func newWorkerEnv(t *testing.T, bin string) *workerEnv {
	t.Helper()
	dsn := queuetest.NewDSN(t)
	d, err := queue.OpenPostgres(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return &workerEnv{t: t, bin: bin, dsn: dsn, dir: t.TempDir(), tm: queue.NewTaskManager(d)}
}

// file writes a file in the directory and returns its path.
func (e *workerEnv) file(name, text string, mode os.FileMode) string {
	e.t.Helper()
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// config writes a configuration; DIR in text is the directory.
func (e *workerEnv) config(text string) string {
	return e.file("esync.toml", strings.ReplaceAll(text, "DIR", e.dir), 0o644)
}

// script writes an executable shell script; DIR in body is the
// directory.
func (e *workerEnv) script(name, body string) string {
	return e.file(name, "#!/bin/sh\n"+strings.ReplaceAll(body, "DIR", e.dir)+"\n", 0o755)
}

// in returns e for use in subtest t.
func (e *workerEnv) in(t *testing.T) *workerEnv {
	c := *e
	c.t = t
	return &c
}

// add enqueues a task.
func (e *workerEnv) add(name, key string, data map[string]any) int64 {
	e.t.Helper()
	id, err := e.tm.Add(context.Background(), name, key, data)
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// task reads a task.
func (e *workerEnv) task(id int64) queue.Task {
	e.t.Helper()
	task, err := e.tm.Get(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return task
}

// waitFor polls until cond holds; it fails the test after 30s.
func (e *workerEnv) waitFor(what string, cond func() bool) {
	e.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitState waits until task id is in state.
func (e *workerEnv) waitState(id int64, state queue.TaskState) queue.Task {
	e.t.Helper()
	var task queue.Task
	e.waitFor(fmt.Sprintf("task %d %s", id, state), func() bool {
		task = e.task(id)
		return task.State == state
	})
	return task
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// workerProc is a running esync binary.
type workerProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr []string
	stdout strings.Builder
	exited chan struct{}
	code   int
}

// start runs the binary with args, DATABASE_URL and the test's secret in
// its environment.
func (e *workerEnv) start(args ...string) *workerProc {
	e.t.Helper()
	cmd := exec.Command(e.bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.dir, "DATABASE_URL=" + e.dsn, "PUSH_TOKEN=" + workerSecret}
	p := &workerProc{t: e.t, cmd: cmd, exited: make(chan struct{})}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr = append(p.stderr, sc.Text())
			p.mu.Unlock()
		}
	}()
	go func() {
		defer readers.Done()
		b, _ := io.ReadAll(outPipe)
		p.mu.Lock()
		p.stdout.Write(b)
		p.mu.Unlock()
	}()
	go func() {
		readers.Wait()
		err := cmd.Wait()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			p.code = exit.ExitCode()
		}
		close(p.exited)
	}()
	e.t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// output is everything the process printed so far.
func (p *workerProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String() + strings.Join(p.stderr, "\n")
}

// waitLine waits until a line of stderr contains s and returns it.
func (p *workerProc) waitLine(s string) string {
	p.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		p.mu.Lock()
		for _, l := range p.stderr {
			if strings.Contains(l, s) {
				p.mu.Unlock()
				return l
			}
		}
		p.mu.Unlock()
		select {
		case <-p.exited:
			p.t.Fatalf("worker exited (status %d) without printing %q:\n%s", p.code, s, p.output())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no line with %q:\n%s", s, p.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wait waits for the process to exit and returns its status; it fails the
// test after 60s.
func (p *workerProc) wait() int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(time.Minute):
		p.t.Fatalf("worker did not exit:\n%s", p.output())
	}
	if strings.Contains(p.output(), workerSecret) {
		p.t.Errorf("the secret appears in the worker's output:\n%s", p.output())
	}
	return p.code
}

// signal sends sig to the process.
func (p *workerProc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// run runs the binary to its end.
func (e *workerEnv) run(args ...string) (int, string) {
	e.t.Helper()
	p := e.start(args...)
	code := p.wait()
	return code, p.output()
}

func TestWorker(t *testing.T) {
	bin := buildCLI(t)
	t.Run("exec", func(t *testing.T) { t.Parallel(); testWorkerExec(t, bin) })
	t.Run("retries", func(t *testing.T) { t.Parallel(); testWorkerRetries(t, bin) })
	t.Run("once", func(t *testing.T) { t.Parallel(); testWorkerOnce(t, bin) })
	t.Run("max idle", func(t *testing.T) { t.Parallel(); testWorkerMaxIdle(t, bin) })
	t.Run("signals", func(t *testing.T) { t.Parallel(); testWorkerSignals(t, bin) })
	t.Run("check", func(t *testing.T) { t.Parallel(); testWorkerCheck(t, bin) })
	t.Run("metrics", func(t *testing.T) { t.Parallel(); testWorkerMetrics(t, bin) })
	t.Run("secrets in logs", func(t *testing.T) { t.Parallel(); testWorkerRedactsLogs(t, bin) })
}

// A scheduled program that fails with a secret in its output is logged
// with the secret redacted.
func testWorkerRedactsLogs(t *testing.T, bin string) {
	e := newWorkerEnv(t, bin)
	e.script("leak.sh", `echo "token is $TOKEN"; exit 1`)
	cfg := e.config(`
[[schedules]]
name = "leaky"
stream = "ops"
every = "100ms"
[schedules.exec]
program = "DIR/leak.sh"
env = { TOKEN = "${PUSH_TOKEN}" }
`)
	p := e.start("worker", "--config", cfg)
	line := p.waitLine("token is")
	if !strings.Contains(line, "token is [redacted]") {
		t.Errorf("log line %q", line)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 { // wait fails the test if the secret was printed
		t.Fatalf("exit %d\n%s", code, p.output())
	}
}

const execConfig = `
[tasks."customer.push".exec]
program = "DIR/push.sh"
args = ["--id={{id}}", "--", "{{name}}"]
env = { REGION = "{{region}}", TOKEN = "${PUSH_TOKEN}", OUT = "DIR/out" }

[tasks."customer.fail".exec]
program = "DIR/fail.sh"
args = ["{{id}}"]
`

// Exec tasks get their arguments and environment from the task data and
// the environment (the secret reaches the program, never the output); a
// failing script ends FAILED with its output (--no-retry); --until-idle
// exits when the queue is drained.
func testWorkerExec(t *testing.T, bin string) {
	e := newWorkerEnv(t, bin)
	e.script("push.sh", `printf '%s\n' "$@" "region=$REGION" "token=$TOKEN" "task=$ESYNC_TASK_NAME" > "$OUT.$ESYNC_TASK_ID"
echo "pushed $3"`)
	e.script("fail.sh", `echo "crm refused customer $1" >&2; echo "partial output"; exit 1`)
	cfg := e.config(execConfig)
	ok := e.add("customer.push", "customer:1", map[string]any{"id": 1, "name": "Ada; rm -rf /", "region": "eu"})
	bad := e.add("customer.fail", "customer:2", map[string]any{"id": 2})
	if code, out := e.run("worker", "--config", cfg, "--until-idle", "--no-retry"); code != 0 {
		t.Fatalf("worker: exit %d\n%s", code, out)
	}
	done := e.task(ok)
	if done.State != queue.TaskDone || !strings.Contains(done.Message, "pushed Ada; rm -rf /") {
		t.Errorf("push task %s: %q", done.State, done.Message)
	}
	written, err := os.ReadFile(filepath.Join(e.dir, fmt.Sprintf("out.%d", ok)))
	if err != nil {
		t.Fatal(err)
	}
	want := "--id=1\n--\nAda; rm -rf /\nregion=eu\ntoken=" + workerSecret + "\ntask=customer.push\n"
	if string(written) != want {
		t.Errorf("the program got\n%s\nwant\n%s", written, want)
	}
	failed := e.task(bad)
	if failed.State != queue.TaskFailed || failed.Attempt != 1 ||
		!strings.Contains(failed.Message, "crm refused customer 2") || !strings.Contains(failed.Message, "partial output") {
		t.Errorf("failing task %s after %d attempts: %q", failed.State, failed.Attempt, failed.Message)
	}
}

// Without --no-retry a failing task is retried by its policy up to its
// max attempts, then FAILED; a task name without a handler in the file is
// left alone when cancel_unhandled is off.
func testWorkerRetries(t *testing.T, bin string) {
	e := newWorkerEnv(t, bin)
	e.script("fail.sh", `echo "attempt $ESYNC_TASK_ATTEMPT failed" >&2; exit 1`)
	cfg := e.config(`
[worker]
cancel_unhandled = false
poll_interval = "50ms"
[tasks.flaky]
max_attempts = 3
retry = { constant = "10ms" }
[tasks.flaky.exec]
program = "DIR/fail.sh"
`)
	id := e.add("flaky", "flaky:1", nil)
	other := e.add("someone.else", "other:1", nil)
	p := e.start("worker", "--config", cfg)
	task := e.waitState(id, queue.TaskFailed)
	if task.Attempt != 3 || !strings.Contains(task.Message, "attempt 3 failed") {
		t.Errorf("after %d attempts: %q", task.Attempt, task.Message)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d after SIGTERM\n%s", code, p.output())
	}
	if st := e.task(other).State; st != queue.TaskReady {
		t.Errorf("unhandled task %s, want READY", st)
	}
}

// --once runs one task and exits 0; with nothing due it exits 3.
func testWorkerOnce(t *testing.T, bin string) {
	e := newWorkerEnv(t, bin)
	e.script("ok.sh", `echo ran`)
	cfg := e.config("[tasks.job.exec]\nprogram = \"DIR/ok.sh\"\n")
	ids := []int64{e.add("job", "job:1", nil), e.add("job", "job:2", nil)}
	doneCount := func() int {
		n := 0
		for _, id := range ids {
			if e.task(id).State == queue.TaskDone {
				n++
			}
		}
		return n
	}
	for want := 1; want <= 2; want++ {
		if code, out := e.run("worker", "--config", cfg, "--once"); code != 0 {
			t.Fatalf("--once with a task due: exit %d\n%s", code, out)
		}
		if n := doneCount(); n != want {
			t.Fatalf("after %d runs of --once %d tasks are DONE", want, n)
		}
	}
	if code, out := e.run("worker", "--config", cfg, "--once"); code != exitNoTask || !strings.Contains(out, "no task was due") {
		t.Fatalf("--once with nothing due: exit %d, want %d\n%s", code, exitNoTask, out)
	}
}

// --max-idle keeps the worker up while it has been idle for less than
// that: a task added after the first one finished still runs, then the
// worker exits by itself.
func testWorkerMaxIdle(t *testing.T, bin string) {
	e := newWorkerEnv(t, bin)
	e.script("job.sh", `echo "ran $ESYNC_TASK_KEY"`)
	cfg := e.config("[worker]\npoll_interval = \"50ms\"\n[tasks.job.exec]\nprogram = \"DIR/job.sh\"\n")
	first := e.add("job", "job:1", nil)
	p := e.start("worker", "--config", cfg, "--until-idle", "--max-idle", "2s")
	e.waitState(first, queue.TaskDone)
	second := e.add("job", "job:2", nil)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.output())
	}
	if task := e.task(second); task.State != queue.TaskDone {
		t.Errorf("task added while the worker was idle: %s", task.State)
	}
}

// SIGTERM lets the running task finish; a second signal stops at once and
// puts the running task back; --shutdown-timeout bounds the wait.
func testWorkerSignals(t *testing.T, bin string) {
	e := newWorkerEnv(t, bin)
	e.script("wait.sh", `touch "DIR/started.$ESYNC_TASK_KEY"
while [ ! -f "DIR/release.$ESYNC_TASK_KEY" ]; do sleep 0.02; done
echo released`)
	cfg := e.config("[tasks.job]\ntimeout = \"10m\"\n[tasks.job.exec]\nprogram = \"DIR/wait.sh\"\n")

	t.Run("graceful", func(t *testing.T) {
		e := e.in(t)
		id := e.add("job", "graceful", nil)
		p := e.start("worker", "--config", cfg, "--shutdown-timeout", "10m")
		e.waitFor("the task to start", func() bool { return exists(filepath.Join(e.dir, "started.graceful")) })
		p.signal(syscall.SIGTERM)
		p.waitLine("shutting down")
		e.file("release.graceful", "", 0o644)
		if code := p.wait(); code != 0 {
			t.Fatalf("exit %d\n%s", code, p.output())
		}
		if task := e.task(id); task.State != queue.TaskDone || !strings.Contains(task.Message, "released") {
			t.Errorf("task %s: %q", task.State, task.Message)
		}
	})
	t.Run("second signal", func(t *testing.T) {
		e := e.in(t)
		id := e.add("job", "hard", nil)
		p := e.start("worker", "--config", cfg, "--shutdown-timeout", "10m")
		e.waitFor("the task to start", func() bool { return exists(filepath.Join(e.dir, "started.hard")) })
		p.signal(syscall.SIGTERM)
		p.waitLine("shutting down")
		p.signal(syscall.SIGINT)
		p.wait() // within the test's minute, long before the 10m timeout
		if !strings.Contains(p.output(), "stopping now") {
			t.Errorf("no word of the hard stop:\n%s", p.output())
		}
		if task := e.task(id); task.State != queue.TaskReady && task.State != queue.TaskRetry {
			t.Errorf("task stopped hard is %s, want back in the queue", task.State)
		}
		e.file("release.hard", "", 0o644) // when it runs again, it ends
	})
	t.Run("shutdown timeout", func(t *testing.T) {
		e := e.in(t)
		id := e.add("job", "timeout", nil)
		p := e.start("worker", "--config", cfg, "--shutdown-timeout", "300ms")
		e.waitFor("the task to start", func() bool { return exists(filepath.Join(e.dir, "started.timeout")) })
		p.signal(syscall.SIGTERM)
		p.wait()
		if task := e.task(id); task.State != queue.TaskReady && task.State != queue.TaskRetry {
			t.Errorf("task still running at the deadline is %s, want back in the queue", task.State)
		}
	})
}

// --check validates a file without a database: a good one passes, a bad
// one is an error with its line and field, and never shows a secret.
func testWorkerCheck(t *testing.T, bin string) {
	e := newWorkerEnv(t, bin)
	c := cli{t: t, bin: bin} // no DATABASE_URL
	good := e.config(strings.ReplaceAll(execConfig, "${PUSH_TOKEN}", "not-a-secret") + "\n[[schedules]]\nname = \"nightly\"\nstream = \"ops\"\ncron = \"0 3 * * *\"\nsql = { statement = \"DELETE FROM sessions WHERE expires < now()\" }\n")
	if out := c.ok("", "worker", "--config", good, "--check"); !strings.Contains(out, "ok (2 task names, 1 schedules)") {
		t.Errorf("--check of a good file: %q", out)
	}
	bad := e.file("bad.toml", "[tasks.x.exec]\nprogram = \"/bin/true\"\nprogam = \"typo\"\n", 0o644)
	r := c.run("", "worker", "--config", bad, "--check")
	if r.code != exitUsage || !strings.Contains(r.stderr, "bad.toml:3: tasks.x.exec.progam: unknown field") {
		t.Errorf("--check of a bad file: exit %d\n%s", r.code, r.stderr)
	}
	// The secret is in the environment of this run only.
	secretFile := e.file("secret.toml", "[tasks.mail.email]\napi_key = \"${PUSH_TOKEN}\"\nhost = \"https://${PUSH_TOKEN}\"\nbcc = \"${PUSH_TOKEN}\"\n", 0o644)
	cmd := exec.Command(bin, "worker", "--config", secretFile, "--check")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PUSH_TOKEN=" + workerSecret}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitUsage || !strings.Contains(string(out), "secret.toml:1: tasks.mail.email") {
		t.Errorf("--check of a file with a bad email host: %v\n%s", err, out)
	}
	if strings.Contains(string(out), workerSecret) {
		t.Errorf("the secret appears in the error:\n%s", out)
	}
	missing := e.file("missing.toml", "[tasks.mail.email]\napi_key = \"${SENDGRID_API_KEY}\"\n", 0o644)
	if r := c.run("", "worker", "--config", missing, "--check"); r.code != exitUsage || !strings.Contains(r.stderr, "missing.toml:2: tasks.mail.email.api_key: environment variable SENDGRID_API_KEY is not set") {
		t.Errorf("unset variable: exit %d\n%s", r.code, r.stderr)
	}
	if r := c.run("", "worker", "--config", filepath.Join(e.dir, "nope.toml"), "--check"); r.code != exitUsage {
		t.Errorf("missing file: exit %d\n%s", r.code, r.stderr)
	}
	if r := c.run("", "worker", "--check"); r.code != exitUsage || !strings.Contains(r.stderr, "--config") {
		t.Errorf("no --config: exit %d\n%s", r.code, r.stderr)
	}
	if r := c.run("", "worker", "--config", good, "--once", "--until-idle"); r.code != exitUsage {
		t.Errorf("--once with --until-idle: exit %d\n%s", r.code, r.stderr)
	}
}

// metricLine matches one sample of the Prometheus text format.
var metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$`)

// metricValue sums the samples of name whose labels include every label
// given ("k=v"); found is false when there is none.
func metricValue(body, name string, labels ...string) (v float64, found bool) {
	for _, line := range strings.Split(body, "\n") {
		m := metricLine.FindStringSubmatch(line)
		if m == nil || m[1] != name {
			continue
		}
		all := true
		for _, l := range labels {
			k, val, _ := strings.Cut(l, "=")
			if !strings.Contains(m[2], k+`="`+val+`"`) {
				all = false
			}
		}
		if !all {
			continue
		}
		x, err := strconv.ParseFloat(m[3], 64)
		if err == nil {
			v, found = v+x, true
		}
	}
	return v, found
}

// --metrics serves the queue's metrics in Prometheus format: finished
// tasks by result, the run time histogram, and depth gauges that match
// the queue.
func testWorkerMetrics(t *testing.T, bin string) {
	e := newWorkerEnv(t, bin)
	e.script("ok.sh", `echo ok`)
	e.script("fail.sh", `echo no >&2; exit 1`)
	cfg := e.config(`
[worker]
cancel_unhandled = false
[tasks.ok.exec]
program = "DIR/ok.sh"
[tasks.fail.exec]
program = "DIR/fail.sh"
`)
	oks := []int64{e.add("ok", "ok:1", nil), e.add("ok", "ok:2", nil)}
	bad := e.add("fail", "fail:1", nil)
	for i := range 3 {
		e.add("unhandled", fmt.Sprintf("u:%d", i), nil)
	}
	p := e.start("worker", "--config", cfg, "--no-retry", "--metrics", "127.0.0.1:0")
	line := p.waitLine("serving metrics")
	url := regexp.MustCompile(`http://127\.0\.0\.1:\d+/metrics`).FindString(line)
	if url == "" {
		t.Fatalf("no metrics URL in %q", line)
	}
	for _, id := range oks {
		e.waitState(id, queue.TaskDone)
	}
	e.waitState(bad, queue.TaskFailed)

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %v, status %d", err, resp.StatusCode)
	}
	text := string(body)
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"esync_task_finished_total", []string{"task_name=ok", "result=success"}, 2},
		{"esync_task_finished_total", []string{"task_name=fail", "result=retry"}, 1},
		{"esync_task_duration_seconds_count", []string{"task_name=ok"}, 2},
		{"esync_task_start_delay_seconds_count", nil, 3},
		{"esync_claim_tasks_total", nil, 3},
		{"esync_queue_depth", []string{"task_name=unhandled", "state=READY"}, 3},
	}
	for _, c := range checks {
		got, found := metricValue(text, c.name, c.labels...)
		if !found || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, found, c.want)
		}
	}
	if _, found := metricValue(text, "esync_task_duration_seconds_bucket", "task_name=ok", "le=+Inf"); !found {
		t.Error("no histogram buckets for esync_task_duration_seconds")
	}
	if _, found := metricValue(text, "esync_queue_depth", "task_name=ok"); found {
		t.Error("depth reported for a name with no unfinished task")
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", text)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.output())
	}
}
