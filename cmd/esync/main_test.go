package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// cli is the esync binary, built for the test.
type cli struct {
	t   *testing.T
	bin string
	dsn string // DATABASE_URL for the runs; empty: unset
}

// result is what one run of the binary did.
type result struct {
	code           int
	stdout, stderr string
}

// buildCLI builds cmd/esync into the test's temporary directory.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "esync")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// run runs the binary with args and stdin, DATABASE_URL set to c.dsn (or
// unset), and returns its exit status and output.
func (c cli) run(stdin string, args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.t.TempDir()}
	if c.dsn != "" {
		cmd.Env = append(cmd.Env, "DATABASE_URL="+c.dsn)
	}
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	code := 0
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		c.t.Fatalf("esync %q: %v", args, err)
	}
	return result{code, stdout.String(), stderr.String()}
}

// ok runs the binary and fails the test unless it exits 0.
func (c cli) ok(stdin string, args ...string) string {
	c.t.Helper()
	r := c.run(stdin, args...)
	if r.code != 0 {
		c.t.Fatalf("esync %q: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// userTables counts the tables outside PostgreSQL's own schemas.
func userTables(t *testing.T, dsn string) int {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCLI(t *testing.T) {
	bin := buildCLI(t)
	t.Run("help", func(t *testing.T) { t.Parallel(); testHelp(t, bin) })
	t.Run("usage errors", func(t *testing.T) { t.Parallel(); testUsageErrors(t, bin) })
	t.Run("not migrated", func(t *testing.T) { t.Parallel(); testNotMigrated(t, bin) })
	t.Run("tasks", func(t *testing.T) { t.Parallel(); testTasks(t, bin) })
	t.Run("inspect", func(t *testing.T) { t.Parallel(); testInspect(t, bin) })
	t.Run("inspect attempts", func(t *testing.T) { t.Parallel(); testInspectAttempts(t, bin) })
}

// Every command's help, asked for in every way, exits 0 and needs no
// database: it works with DATABASE_URL unset, and with it set writes nothing.
func testHelp(t *testing.T, bin string) {
	dsn := queuetest.NewDSN(t)
	root := newRootCommand(&app{})
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var names []string
	for _, c := range root.Commands() {
		names = append(names, c.Name())
	}
	for _, want := range []string{"migrate", "enqueue", "inspect", "counts", "cancel", "retry", "pause", "resume", "streams", "processes", "ui", "completion", "help"} {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
			t.Errorf("no %s command among %v", want, names)
		}
	}
	for _, env := range []string{"", dsn} {
		c := cli{t: t, bin: bin, dsn: env}
		for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {}} {
			if out := c.ok("", args...); !strings.Contains(out, "Available Commands:") || !strings.Contains(out, "migrate") {
				t.Errorf("esync %q printed no command list:\n%s", args, out)
			}
		}
		for _, name := range names {
			for _, args := range [][]string{{"help", name}, {name, "--help"}, {name, "-h"}, {"--dsn", "postgres://nowhere.invalid/x", name, "--help"}} {
				out := c.ok("", args...)
				if !strings.Contains(out, "Usage:") || !strings.Contains(out, "esync "+name) {
					t.Errorf("esync %q: no help for %s:\n%s", args, name, out)
				}
			}
		}
	}
	if n := userTables(t, dsn); n != 0 {
		t.Fatalf("asking for help created %d tables", n)
	}
	// Completion comes with the command line library.
	if out := (cli{t: t, bin: bin}).ok("", "completion", "bash"); !strings.Contains(out, "bash completion") {
		t.Errorf("completion bash:\n%.200s", out)
	}
	if out := (cli{t: t, bin: bin}).ok("", "__complete", "inspect", "--state", ""); !strings.Contains(out, "IN_PROGRESS") {
		t.Errorf("completing --state:\n%s", out)
	}
}

// Each mistake exits 2 with an error that names it and, where there is a
// list, the valid choices; nothing is written.
func testUsageErrors(t *testing.T, bin string) {
	dsn := queuetest.NewDSN(t)
	c := cli{t: t, bin: bin, dsn: dsn}
	c.ok("", "migrate")
	dir := t.TempDir()
	badFile := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(badFile, []byte("{\n  \"name\": \"Ada\",\n  \"tier\": pro\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		stdin string
		args  []string
		want  []string
	}{
		{"", []string{"frobnicate"}, []string{`unknown command "frobnicate"`, "valid commands: cancel, completion, counts, enqueue, help, inspect, migrate, pause, processes, resume, retry, streams, ui"}},
		{"", []string{"migrat"}, []string{`unknown command "migrat"`, `did you mean "migrate"`}},
		{"", []string{"help", "nosuch"}, []string{`unknown command "nosuch"`, "valid commands:"}},
		{"", []string{"--frob", "counts"}, []string{"unknown flag: --frob", "--dsn"}},
		{"", []string{"inspect", "--nope"}, []string{"unknown flag: --nope", "--state", "--limit"}},
		{"", []string{"migrate", "extra"}, []string{"takes no arguments", `"extra"`}},
		{"", []string{"counts", "a", "b"}, []string{"at most one task NAME", `"b"`}},
		{"", []string{"inspect", "--state", "NOPE"}, []string{`unknown state "NOPE"`, "valid states: READY, IN_PROGRESS, RETRY, DONE, FAILED, CANCELLED, SUPERSEDED"}},
		{"", []string{"inspect", "--limit", "0"}, []string{"--limit 0: give at least 1"}},
		{"", []string{"inspect", "--limit", "-5"}, []string{"--limit -5"}},
		{"", []string{"inspect", "--limit", "many"}, []string{`invalid argument "many"`}},
		{"", []string{"inspect", "x"}, []string{`task ID "x" is not a positive number`}},
		{"", []string{"inspect", "--key", "k", "3"}, []string{"not both"}},
		{"", []string{"retry", "0"}, []string{`task ID "0"`}},
		{"", []string{"retry"}, []string{"needs task IDs or --name/--state/--key"}},
		{"", []string{"cancel"}, []string{"needs task IDs, --key KEY or --name/--state"}},
		{"", []string{"enqueue", "only-name"}, []string{"NAME, KEY and optionally DATA"}},
		{"", []string{"enqueue", "job", "k", `{"name": "Ada",}`}, []string{"task data is not valid JSON: line 1, column 16"}},
		{"{\n\"a\": 1\n\"b\": 2}", []string{"enqueue", "job", "k", "-"}, []string{"task data from stdin is not valid JSON: line 3, column 1"}},
		{"", []string{"enqueue", "job", "k", "@" + badFile}, []string{"task data in", "bad.json", "line 3, column 11"}},
		{"", []string{"enqueue", "job", "k", "@" + filepath.Join(dir, "missing.json")}, []string{"missing.json", "no such file"}},
		{"", []string{"enqueue", "job", "k", `[1, 2]`}, []string{"must be a JSON object", "an array"}},
		{"", []string{"enqueue", "job", "k", `{"a": 1`}, []string{"not valid JSON", "unexpected end"}},
		{"", []string{"enqueue", "job", "k", ""}, []string{"task data is empty"}},
		{"", []string{"enqueue", "job", "customer\t1"}, []string{"invalid task", "key", `\t`, "tab"}},
		{"", []string{"enqueue", "job", "   "}, []string{"invalid task", "only whitespace"}},
		{"", []string{"enqueue", "job\n2", "k"}, []string{"invalid task", "name", "newline"}},
		{"", []string{"enqueue", "job", "k", "--delay", "-1s"}, []string{"--delay -1s is negative"}},
		{"", []string{"enqueue", "job", "k", "--run-after", "tomorrow"}, []string{"RFC 3339"}},
		{"", []string{"--table", "x; DROP TABLE y", "migrate"}, []string{"invalid identifier"}},
	}
	for _, tc := range cases {
		r := c.run(tc.stdin, tc.args...)
		if r.code != exitUsage {
			t.Errorf("esync %q: exit %d, want %d\nstderr: %s", tc.args, r.code, exitUsage, r.stderr)
			continue
		}
		for _, want := range tc.want {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("esync %q: stderr lacks %q:\n%s", tc.args, want, r.stderr)
			}
		}
		if r.stdout != "" {
			t.Errorf("esync %q printed to stdout on a usage error: %q", tc.args, r.stdout)
		}
	}
	if r := (cli{t: t, bin: bin}).run("", "counts"); r.code != exitUsage || !strings.Contains(r.stderr, "no database: pass --dsn or set DATABASE_URL") {
		t.Errorf("counts without a database: exit %d, %s", r.code, r.stderr)
	}
	d, err := queue.OpenPostgres(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if n, err := d.CountTasks(context.Background(), queue.TaskFilter{}); err != nil || n != 0 {
		t.Fatalf("usage errors left %d tasks (%v)", n, err)
	}
}

// A queue that was never migrated gets the hint to migrate, not a bare
// "relation does not exist".
func testNotMigrated(t *testing.T, bin string) {
	c := cli{t: t, bin: bin, dsn: queuetest.NewDSN(t)}
	for _, args := range [][]string{{"inspect"}, {"counts"}, {"enqueue", "job", "k"}, {"--schema", "jobs", "--table", "q", "inspect"}} {
		r := c.run("", args...)
		if r.code != exitFailure || !strings.Contains(r.stderr, "run `esync migrate") {
			t.Errorf("esync %q on a queue not migrated: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	if r := c.run("", "--schema", "jobs", "--table", "q", "counts"); !strings.Contains(r.stderr, "esync migrate --schema jobs --table q") {
		t.Errorf("the hint does not carry the queue's place:\n%s", r.stderr)
	}
}

// enqueue from an argument, stdin and a file; cancel, retry and counts.
func testTasks(t *testing.T, bin string) {
	dsn := queuetest.NewDSN(t)
	c := cli{t: t, bin: bin, dsn: dsn}
	if out := c.ok("", "migrate"); !strings.Contains(out, "public.message_queue at migration") {
		t.Fatalf("migrate: %q", out)
	}
	if out := c.ok("", "enqueue", "crm.update", "customer:1", `{"name":"Ada"}`); out != "added task 1\n" {
		t.Fatalf("enqueue: %q", out)
	}
	c.ok("{\n  \"name\": \"Ada L\"\n}\n", "enqueue", "crm.update", "customer:3", "-")
	file := filepath.Join(t.TempDir(), "task.json")
	if err := os.WriteFile(file, []byte(`{"name": "Bo", "tags": ["a"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok("", "enqueue", "crm.update", "customer:2", "@"+file, "--created-by", "ops", "--max-attempts", "3")
	d, err := queue.OpenPostgres(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tm := queue.NewTaskManager(d)
	ctx := context.Background()
	for id, want := range map[int64]string{1: `{"name": "Ada"}`, 2: `{"name": "Ada L"}`, 3: `{"name": "Bo", "tags": ["a"]}`} {
		task, err := tm.Get(ctx, id)
		if err != nil || string(task.RawData) != want {
			t.Fatalf("task %d: data %s (%v), want %s", id, task.RawData, err, want)
		}
	}
	if task, _ := tm.Get(ctx, 3); task.CreatedBy != "ops" || task.MaxAttempts != 3 {
		t.Fatalf("task 3: created by %q, max attempts %d", task.CreatedBy, task.MaxAttempts)
	}
	if out := c.ok("", "cancel", "1"); out != "cancelled task 1\n" {
		t.Fatalf("cancel: %q", out)
	}
	if out := c.ok("", "cancel", "--key", "customer:3"); out != "cancelled 1 tasks of key customer:3\n" {
		t.Fatalf("cancel --key: %q", out)
	}
	if out := c.ok("", "retry", "2"); out != "task 2 is READY again\n" {
		t.Fatalf("retry: %q", out)
	}
	if r := c.run("", "retry", "3", "99"); r.code != exitFailure || !strings.Contains(r.stderr, "99") || !strings.Contains(r.stderr, "cannot be retried") {
		t.Fatalf("retry of a READY and a missing task: exit %d %s", r.code, r.stderr)
	}
	out := c.ok("", "counts")
	if !strings.Contains(out, "READY        2") || !strings.Contains(out, "CANCELLED    1") {
		t.Fatalf("counts: %q", out)
	}
	if out := c.ok("", "counts", "other.name"); !strings.Contains(out, "READY        0") {
		t.Fatalf("counts other.name: %q", out)
	}
}

// inspect lists newest first, shows when a task may run, takes states in
// every spelling, shows several tasks by ID, and escapes keys that would
// break the table.
func testInspect(t *testing.T, bin string) {
	dsn := queuetest.NewDSN(t)
	c := cli{t: t, bin: bin, dsn: dsn}
	c.ok("", "migrate")
	d, err := queue.OpenPostgres(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	tm := queue.NewTaskManager(d)
	for _, k := range []string{"a", "b", "c"} {
		if _, err := tm.Add(ctx, "job", "key:"+k, nil); err != nil {
			t.Fatal(err)
		}
	}
	claimed, err := d.Claim(ctx, queue.ClaimParams{Names: []string{"job"}, Limit: 1, Lease: time.Minute})
	if err != nil || len(claimed) != 1 || claimed[0].ID != 1 {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	c.ok("", "enqueue", "job", "key:later", "--delay", "1h")
	// A key from before keys were checked, or from another writer: shown
	// escaped, on one row.
	if _, err := d.DB().ExecContext(ctx, `INSERT INTO message_queue (task_name, task_key, data, created_by, state, last_attempt_message)
VALUES ('job', E'evil\tkey\nID\tFAKE', '{}', 'sql', 'DONE', E'line one\nline two')`); err != nil {
		t.Fatal(err)
	}

	out := c.ok("", "inspect")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[0], "RUN AFTER") {
		t.Fatalf("inspect printed %d lines, want a header and 5 tasks:\n%s", len(lines), out)
	}
	var order []string
	for _, l := range lines[1:] {
		order = append(order, strings.Fields(l)[0])
	}
	if strings.Join(order, " ") != "5 4 3 2 1" {
		t.Fatalf("inspect order %v, want newest first:\n%s", order, out)
	}
	if !strings.Contains(lines[1], `"evil\tkey\nID\tFAKE"`) || !strings.Contains(lines[1], `line one line two`) {
		t.Errorf("the hostile key or message is not escaped:\n%s", lines[1])
	}
	if !regexp.MustCompile(`key:later +READY +0/\d+ +\S+ +\S+ \(in (59m5\d|1h0m0)s\)`).MatchString(lines[2]) {
		t.Errorf("the delayed task does not show when it may run:\n%s", lines[2])
	}
	if !regexp.MustCompile(`key:c +READY .* now`).MatchString(lines[3]) || !regexp.MustCompile(`key:a +IN PROGRESS .* -`).MatchString(lines[5]) {
		t.Errorf("RUN AFTER of due and running tasks:\n%s", out)
	}

	for _, spelling := range []string{"IN_PROGRESS", "in-progress", "IN PROGRESS", "in progress", "In_Progress"} {
		out := c.ok("", "inspect", "--state", spelling)
		if strings.Count(out, "\n") != 2 || !strings.Contains(out, "key:a") {
			t.Errorf("--state %q:\n%s", spelling, out)
		}
	}
	if out := c.ok("", "inspect", "--state", "ready,done", "--state", "canceled"); strings.Count(out, "\n") != 5 {
		t.Errorf("--state ready,done --state canceled: want 4 tasks\n%s", out)
	}
	r := c.run("", "inspect", "--limit", "2")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 3 || !strings.Contains(r.stderr, "--before 4") {
		t.Errorf("--limit 2: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if out := c.ok("", "inspect", "--before", "4", "--limit", "2"); !regexp.MustCompile(`(?s)\n3 .*\n2 `).MatchString(out) || strings.Count(out, "\n") != 3 {
		t.Errorf("--before 4 --limit 2:\n%s", out)
	}

	out = c.ok("", "inspect", "--json", "--limit", "2")
	var first struct {
		ID       int64  `json:"id"`
		Key      string `json:"key"`
		RunAfter string `json:"run_after"`
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &first) != nil || first.ID != 5 || first.Key != "evil\tkey\nID\tFAKE" {
		t.Errorf("inspect --json --limit 2:\n%s", out)
	}

	r = c.run("", "inspect", "3", "1", "404")
	if r.code != exitFailure || !strings.Contains(r.stderr, "task 404: not found") {
		t.Errorf("inspect 3 1 404: exit %d %s", r.code, r.stderr)
	}
	if !regexp.MustCompile(`(?s)^\{\n  .*"id": 3,.*\}\n\{\n.*"id": 1,.*"state": "IN PROGRESS"`).MatchString(r.stdout) {
		t.Errorf("inspect 3 1 did not print both tasks in order:\n%s", r.stdout)
	}
}

// inspect ID prints the messages of a task's attempts that did not
// succeed, with their numbers, and its supersede chain, cut after 10 links
// with the end kept and the links left out counted.
func testInspectAttempts(t *testing.T, bin string) {
	dsn := queuetest.NewDSN(t)
	c := cli{t: t, bin: bin, dsn: dsn}
	c.ok("", "migrate")
	d, err := queue.OpenPostgres(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	tm := queue.NewTaskManager(d)
	id, err := tm.Add(ctx, "job", "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []struct {
		state   queue.TaskState
		message string
	}{{queue.TaskRetry, "CRM answered 503"}, {queue.TaskRetry, "connection reset"}, {queue.TaskDone, "synced"}} {
		got, err := d.Claim(ctx, queue.ClaimParams{Names: []string{"job"}, Limit: 1, Lease: time.Minute})
		if err != nil || len(got) != 1 {
			t.Fatalf("claim: %v %v", got, err)
		}
		if _, err := d.Finish(ctx, []queue.Completion{{Lease: got[0].Lease, State: o.state, Message: o.message}}); err != nil {
			t.Fatal(err)
		}
	}
	// Each task added for key z supersedes the one before it.
	var chain []int64
	for range 14 {
		id, err := tm.Add(ctx, "other", "z", nil)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, id)
	}

	var task struct {
		State  string `json:"state"`
		Errors []struct {
			Attempt int    `json:"attempt"`
			At      string `json:"at"`
			State   string `json:"state"`
			Message string `json:"message"`
		} `json:"errors"`
		RanInstead []struct {
			ID    int64  `json:"id"`
			State string `json:"state"`
		} `json:"ran_instead"`
		Omitted    int     `json:"ran_instead_omitted"`
		Supersedes []int64 `json:"supersedes"`
	}
	out := c.ok("", "inspect", strconv.FormatInt(id, 10))
	if err := json.Unmarshal([]byte(out), &task); err != nil {
		t.Fatalf("inspect %d: %v\n%s", id, err, out)
	}
	if task.State != "DONE" || len(task.Errors) != 2 ||
		task.Errors[0].Attempt != 1 || task.Errors[0].State != "RETRY" || task.Errors[0].Message != "CRM answered 503" || task.Errors[0].At == "" ||
		task.Errors[1].Attempt != 2 || task.Errors[1].Message != "connection reset" {
		t.Fatalf("inspect %d: want both failures with their attempts:\n%s", id, out)
	}

	task.Errors = nil
	out = c.ok("", "inspect", strconv.FormatInt(chain[0], 10))
	if err := json.Unmarshal([]byte(out), &task); err != nil {
		t.Fatalf("inspect %d: %v\n%s", chain[0], err, out)
	}
	var links []int64
	for _, l := range task.RanInstead {
		links = append(links, l.ID)
	}
	want := append(append([]int64{}, chain[1:11]...), chain[13])
	if fmt.Sprint(links) != fmt.Sprint(want) || task.Omitted != 2 || task.RanInstead[10].State != "READY" || len(task.Errors) != 0 {
		t.Fatalf("inspect %d: chain %v (%d omitted), want %v and 2 omitted:\n%s", chain[0], links, task.Omitted, want, out)
	}
	out = c.ok("", "inspect", strconv.FormatInt(chain[13], 10))
	if err := json.Unmarshal([]byte(out), &task); err != nil || fmt.Sprint(task.Supersedes) != fmt.Sprint(chain[12:13]) {
		t.Fatalf("inspect %d: want it to name task %d as superseded:\n%s", chain[13], chain[12], out)
	}
}
