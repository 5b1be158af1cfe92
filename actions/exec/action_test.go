//go:build unix

package execaction_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/esync/queue"
	execaction "github.com/esync/queue/actions/exec"
)

var _ queue.TaskAction = (*execaction.Action)(nil)

func newAction(t *testing.T, cfg execaction.Config) *execaction.Action {
	t.Helper()
	a, err := execaction.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestExitStatusDecidesTheResult(t *testing.T) {
	t.Parallel()
	res, msg := newAction(t, execaction.Config{Program: "/bin/true"}).Do(task(t, `{}`))
	wantResult(t, res, msg, queue.TaskResultSuccess, "exit status 0")

	res, msg = newAction(t, execaction.Config{Program: "/bin/false"}).Do(task(t, `{}`))
	wantResult(t, res, msg, queue.TaskResultRetryFailure, "exit status 1")

	res, msg = newAction(t, execaction.Config{Program: "false", PermanentExitCodes: []int{1}}).Do(task(t, `{}`))
	wantResult(t, res, msg, queue.TaskResultPermanentFailure, "exit status 1 (permanent)")

	exit3 := script(t, `echo "bad input" >&2; exit 3`)
	res, msg = newAction(t, execaction.Config{Program: exit3, PermanentExitCodes: []int{2, 3}}).Do(task(t, `{}`))
	wantResult(t, res, msg, queue.TaskResultPermanentFailure, "exit status 3", "--- stderr ---\nbad input")

	res, msg = newAction(t, execaction.Config{Program: exit3, PermanentExitCodes: []int{2}}).Do(task(t, `{}`))
	wantResult(t, res, msg, queue.TaskResultRetryFailure, "exit status 3")
}

func TestDeathBySignalRetries(t *testing.T) {
	t.Parallel()
	res, msg := newAction(t, execaction.Config{Program: script(t, `kill -TERM $$`)}).Do(task(t, `{}`))
	wantResult(t, res, msg, queue.TaskResultRetryFailure, "signal: terminated")
}

func TestProgramThatCannotStartFails(t *testing.T) {
	t.Parallel()
	notExecutable := filepath.Join(t.TempDir(), "plain.txt")
	if err := os.WriteFile(notExecutable, []byte("echo hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  execaction.Config
		want string
	}{
		{"missing path", execaction.Config{Program: "/nonexistent/esync-program"}, "no such file or directory"},
		{"missing name", execaction.Config{Program: "esync-no-such-program"}, "executable file not found"},
		{"not executable", execaction.Config{Program: notExecutable}, "permission denied"},
		{"missing directory", execaction.Config{Program: "/bin/true", Dir: "/nonexistent/dir"}, "working directory: stat /nonexistent/dir: no such file or directory"},
		{"directory is a file", execaction.Config{Program: "/bin/true", Dir: notExecutable}, "not a directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, msg := newAction(t, tc.cfg).Do(task(t, `{}`))
			wantResult(t, res, msg, queue.TaskResultPermanentFailure, "cannot start", tc.want)
		})
	}
}

func TestArgumentsEnvironmentAndStdin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	prog := script(t, `
		printf '%s\0' "$@" > "`+dir+`/args"
		cat > "`+dir+`/stdin"
		printf '%s\0' "$CUSTOMER" "$REGION" "$ESYNC_TASK_ID" "$ESYNC_TASK_NAME" "$ESYNC_TASK_KEY" "$ESYNC_TASK_ATTEMPT" > "`+dir+`/env"`)
	a := newAction(t, execaction.Config{
		Program: prog,
		Args:    []string{"sync", "--id={{customer_id}}", "--tags={{ tags }}", "--first={{tags.0}}", "--city={{address.city}}", "--vip={{vip}}", "--", "{{name}}"},
		Env:     map[string]string{"CUSTOMER": "customer-{{customer_id}}", "REGION": "{{address.region}}"},
	})
	raw := `{"customer_id": 9007199254740993, "name": "-Ann", "tags": ["a&b", "<c>"], "vip": true,
		"address": {"city": "Zürich", "region": "eu"}, "not_whitelisted": "ignored"}`
	res, msg := a.Do(task(t, raw))
	wantResult(t, res, msg, queue.TaskResultSuccess, "exit status 0")

	wantArgs := []string{"sync", "--id=9007199254740993", `--tags=["a&b","<c>"]`, "--first=a&b", "--city=Zürich", "--vip=true", "--", "-Ann"}
	if got := nulSplit(t, dir+"/args"); !reflect.DeepEqual(got, wantArgs) {
		t.Errorf("arguments\n got %q\nwant %q", got, wantArgs)
	}
	wantEnv := []string{"customer-9007199254740993", "eu", "7", "customer.push", "customer:42", "2"}
	if got := nulSplit(t, dir+"/env"); !reflect.DeepEqual(got, wantEnv) {
		t.Errorf("environment\n got %q\nwant %q", got, wantEnv)
	}

	stdin, err := os.ReadFile(dir + "/stdin")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(stdin), "}\n") || strings.Count(string(stdin), "\n") != 1 {
		t.Errorf("stdin is not one JSON line: %q", stdin)
	}
	var doc struct {
		ID      int64           `json:"id"`
		Name    string          `json:"name"`
		Key     string          `json:"key"`
		Attempt int             `json:"attempt"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(stdin, &doc); err != nil {
		t.Fatalf("stdin %q: %v", stdin, err)
	}
	if doc.ID != 7 || doc.Name != "customer.push" || doc.Key != "customer:42" || doc.Attempt != 2 {
		t.Errorf("stdin task %+v", doc)
	}
	if !strings.Contains(string(doc.Data), `"customer_id":9007199254740993`) || !strings.Contains(string(doc.Data), `"not_whitelisted"`) ||
		!strings.Contains(string(stdin), `["a&b","<c>"]`) {
		t.Errorf("stdin data %s does not carry the task data exactly", doc.Data)
	}
}

func TestShellMetacharactersArePassedLiterally(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	prog := script(t, `printf '%s\0' "$@" > "`+dir+`/args"; printf '%s\0' "$VALUE" > "`+dir+`/env"`)
	hostile := []string{
		"$(touch " + dir + "/pwned1)",
		"; touch " + dir + "/pwned2",
		"`touch " + dir + "/pwned3`",
		"| touch " + dir + "/pwned4",
		"&& touch " + dir + "/pwned5 #",
		"x\ntouch " + dir + "/pwned6",
		`'single' "double" \back *glob* ~ {a,b} $HOME`,
		"{{other}}",
		"; rm -rf " + dir,
	}
	a := newAction(t, execaction.Config{
		Program: prog,
		Args:    []string{"{{v}}", "--v={{v}}"},
		Env:     map[string]string{"VALUE": "{{v}}"},
	})
	for _, h := range hostile {
		b, _ := json.Marshal(map[string]string{"v": h, "other": "expanded"})
		res, msg := a.Do(task(t, string(b)))
		wantResult(t, res, msg, queue.TaskResultSuccess)
		if got := nulSplit(t, dir+"/args"); !reflect.DeepEqual(got, []string{h, "--v=" + h}) {
			t.Errorf("arguments for %q: got %q", h, got)
		}
		if got := nulSplit(t, dir+"/env"); !reflect.DeepEqual(got, []string{h}) {
			t.Errorf("environment for %q: got %q", h, got)
		}
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "pwned*"))
	if len(matches) > 0 {
		t.Fatalf("a value was run as a command: %v exist", matches)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("a value was run as a command: %v", err)
	}
}

func TestWorkerEnvironmentIsNotInherited(t *testing.T) {
	t.Setenv("ESYNC_TEST_SECRET", "s3cret-value")
	t.Setenv("ESYNC_TEST_PASSED", "passed-value")
	dir := t.TempDir()
	prog := script(t, `env > "`+dir+`/env"`)
	a := newAction(t, execaction.Config{
		Program: prog,
		Env:     map[string]string{"CUSTOMER": "{{customer_id}}"},
		PassEnv: []string{"ESYNC_TEST_PASSED", "ESYNC_TEST_UNSET"},
	})
	res, msg := a.Do(task(t, `{"customer_id": 42, "ESYNC_TEST_SECRET": "from data"}`))
	wantResult(t, res, msg, queue.TaskResultSuccess)

	b, err := os.ReadFile(dir + "/env")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		name, value, _ := strings.Cut(line, "=")
		got[name] = value
	}
	// The shell itself may add PWD, OLDPWD, SHLVL or _.
	for _, shellOwn := range []string{"PWD", "OLDPWD", "SHLVL", "_"} {
		delete(got, shellOwn)
	}
	want := map[string]string{
		"PATH":               os.Getenv("PATH"),
		"ESYNC_TEST_PASSED":  "passed-value",
		"CUSTOMER":           "42",
		"ESYNC_TASK_ID":      "7",
		"ESYNC_TASK_NAME":    "customer.push",
		"ESYNC_TASK_KEY":     "customer:42",
		"ESYNC_TASK_ATTEMPT": "2",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("program environment %v\nwant exactly %v", got, want)
	}
}

func TestUnusableDataFailsWithoutRunning(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "ran")
	prog := script(t, `touch "`+marker+`"`)
	cases := []struct {
		name string
		cfg  execaction.Config
		data string
		want string
	}{
		{"missing field", execaction.Config{Args: []string{"--id={{customer_id}}"}}, `{"id": 1}`,
			"argument 1: field customer_id: missing from the task data"},
		{"missing nested field", execaction.Config{Args: []string{"{{a.b}}"}}, `{"a": {"c": 1}}`,
			"field a.b: missing from the task data"},
		{"index out of range", execaction.Config{Args: []string{"{{a.3}}"}}, `{"a": [1]}`,
			"field a.3: no element"},
		{"path through a scalar", execaction.Config{Args: []string{"{{a.b}}"}}, `{"a": 5}`,
			"a is not an object or array"},
		{"null field", execaction.Config{Args: []string{"--note={{note}}"}}, `{"note": null}`,
			"field note: is null"},
		{"NUL in argument", execaction.Config{Args: []string{"--name={{name}}"}}, `{"name": "a\u0000b"}`,
			"field name contains a NUL byte"},
		{"NUL in environment", execaction.Config{Env: map[string]string{"NAME": "{{name}}"}}, `{"name": "a\u0000b"}`,
			"variable NAME: field name contains a NUL byte"},
		{"missing environment field", execaction.Config{Env: map[string]string{"NAME": "{{name}}"}}, `{}`,
			"variable NAME: field name: missing"},
		{"option smuggled as an argument", execaction.Config{Args: []string{"delete", "{{target}}"}}, `{"target": "--all"}`,
			"field target starts with '-' and would be read as an option"},
		{"data that is not an object", execaction.Config{}, `[1, 2]`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Program = prog
			tk := queue.Task{Name: "n", Key: "k", RawData: []byte(tc.data)}
			res, msg := newAction(t, cfg).Do(tk)
			wantResult(t, res, msg, queue.TaskResultPermanentFailure, tc.want)
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("the program ran")
			}
		})
	}
}

func TestTimeoutKillsTheWholeProcessGroup(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	prog := script(t, `sleep 1000 & echo $! > "$1"; wait`)
	a := newAction(t, execaction.Config{Program: prog, Args: []string{pidFile}})

	// The test ends the run itself once the child exists, so the check does
	// not depend on how fast the machine starts processes.
	child, cancelRun := startUntilChild(t, a, pidFile)
	if !alive(child) {
		t.Fatalf("child %d is not running before the timeout", child)
	}
	res, msg := cancelRun()
	wantResult(t, res, msg, queue.TaskResultRetryFailure, "cancelled; process group killed")
	waitGone(t, child)
}

// startUntilChild runs a in the background until the script has written its
// child's pid to pidFile, and returns that pid and a function that cancels
// the run and returns its result.
func startUntilChild(t *testing.T, a *execaction.Action, pidFile string) (int, func() (queue.TaskResult, queue.TaskMessage)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	type result struct {
		res queue.TaskResult
		msg queue.TaskMessage
	}
	done := make(chan result, 1)
	go func() {
		res, msg := a.Do(task(t, `{}`).WithContext(ctx))
		done <- result{res, msg}
	}()
	child := readPID(t, pidFile)
	return child, func() (queue.TaskResult, queue.TaskMessage) {
		cancel()
		r := <-done
		return r.res, r.msg
	}
}

func TestConfiguredTimeoutRetries(t *testing.T) {
	t.Parallel()
	a := newAction(t, execaction.Config{Program: "/bin/sleep", Args: []string{"1000"}, Timeout: 50 * time.Millisecond})
	res, msg := a.Do(task(t, `{}`))
	wantResult(t, res, msg, queue.TaskResultRetryFailure, "timed out; process group killed", "signal: killed")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	a = newAction(t, execaction.Config{Program: "/bin/sleep", Args: []string{"1000"}})
	res, msg = a.Do(task(t, `{}`).WithContext(ctx))
	wantResult(t, res, msg, queue.TaskResultRetryFailure, "timed out; process group killed")
}

func TestKillGraceSendsSIGTERMFirst(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	prog := script(t, `trap 'echo got TERM >&2; exit 0' TERM
		sleep 1000 & echo $! > "$1"; wait`)
	// A grace far longer than the test: only SIGTERM can end the run early.
	a := newAction(t, execaction.Config{Program: prog, Args: []string{pidFile}, KillGrace: time.Hour})
	child, cancelRun := startUntilChild(t, a, pidFile)
	res, msg := cancelRun()
	wantResult(t, res, msg, queue.TaskResultRetryFailure, "cancelled", "got TERM")
	waitGone(t, child)
}

func TestChildrenLeftBehindAreKilled(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	prog := script(t, `sleep 1000 & echo $! > "$1"; echo started; exit 0`)
	res, msg := newAction(t, execaction.Config{Program: prog, Args: []string{pidFile}}).Do(task(t, `{}`))
	wantResult(t, res, msg, queue.TaskResultSuccess, "exit status 0", "--- stdout ---\nstarted")
	waitGone(t, readPID(t, pidFile))
}

func TestProcessOutsideTheGroupDoesNotHangTheRun(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("setsid not installed")
	}
	pidFile := filepath.Join(t.TempDir(), "daemon.pid")
	// The daemon keeps the output pipe open in a session of its own.
	prog := script(t, `setsid sleep 1000 & echo $! > "$1"; exit 0`)
	res, msg := newAction(t, execaction.Config{Program: prog, Args: []string{pidFile}}).Do(task(t, `{}`))
	wantResult(t, res, msg, queue.TaskResultSuccess)
	daemon := readPID(t, pidFile)
	syscall.Kill(daemon, syscall.SIGKILL)
	waitGone(t, daemon)
}

func TestOutputIsBoundedAndStorable(t *testing.T) {
	t.Parallel()
	prog := script(t, `
		i=0
		while [ $i -lt 3000 ]; do echo "line $i of the output"; i=$((i+1)); done
		echo LAST-LINE
		printf 'bad \377\376 bytes and a \000 NUL\n' >&2
		exit 1`)
	res, msg := newAction(t, execaction.Config{Program: prog}).Do(task(t, `{}`))
	wantResult(t, res, msg, queue.TaskResultRetryFailure, "exit status 1", "--- stdout (last 4096 of ", "LAST-LINE",
		"--- stderr ---\nbad \uFFFD bytes and a \uFFFD NUL")
	if strings.Contains(string(msg), "line 0 of") {
		t.Error("the start of a long output was kept")
	}
	if len(msg) > 2*execaction.DefaultOutputLimit+200 {
		t.Errorf("message is %d bytes long", len(msg))
	}
	if !utf8.ValidString(string(msg)) || strings.ContainsRune(string(msg), 0) {
		t.Error("message is not valid UTF-8 without NULs")
	}

	res, msg = newAction(t, execaction.Config{Program: prog, OutputLimit: 16}).Do(task(t, `{}`))
	wantResult(t, res, msg, queue.TaskResultRetryFailure, "--- stdout (last 16 of ", "\nLAST-LINE")
}

func TestLargeStdin(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 1<<20)
	b, _ := json.Marshal(map[string]string{"blob": big})
	tk := task(t, string(b))

	// A program that never reads its input still finishes.
	res, msg := newAction(t, execaction.Config{Program: "/bin/true"}).Do(tk)
	wantResult(t, res, msg, queue.TaskResultSuccess)

	// One that does gets all of it.
	res, msg = newAction(t, execaction.Config{Program: "wc", Args: []string{"-c"}}).Do(tk)
	wantResult(t, res, msg, queue.TaskResultSuccess)
	doc, _ := json.Marshal(map[string]any{"id": 7, "name": "customer.push", "key": "customer:42", "data": json.RawMessage(b), "attempt": 2})
	want := len(doc) + 1
	if !strings.Contains(string(msg), "--- stdout ---\n"+strconv.Itoa(want)) {
		t.Errorf("wc -c saw %q, want %d bytes", msg, want)
	}
}

func TestCancelledTaskIsNotStarted(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "ran")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, msg := newAction(t, execaction.Config{Program: script(t, `touch "`+marker+`"`)}).Do(task(t, `{}`).WithContext(ctx))
	wantResult(t, res, msg, queue.TaskResultRetryFailure, "not started")
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the program ran")
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  execaction.Config
		want string
	}{
		{"no program", execaction.Config{}, "no program"},
		{"unclosed placeholder", execaction.Config{Program: "x", Args: []string{"--id={{id"}}, "unclosed {{"},
		{"empty placeholder", execaction.Config{Program: "x", Args: []string{"{{ }}"}}, "empty field name"},
		{"bad field name", execaction.Config{Program: "x", Args: []string{"{{a b}}"}}, "not allowed in a field name"},
		{"empty path segment", execaction.Config{Program: "x", Args: []string{"{{a..b}}"}}, "empty path segment"},
		{"NUL in literal", execaction.Config{Program: "x", Args: []string{"a\x00b"}}, "NUL"},
		{"NUL in program", execaction.Config{Program: "x\x00y"}, "NUL"},
		{"bad env name", execaction.Config{Program: "x", Env: map[string]string{"A=B": "v"}}, "not a valid variable name"},
		{"env name starting with digit", execaction.Config{Program: "x", Env: map[string]string{"1A": "v"}}, "not a valid variable name"},
		{"reserved env name", execaction.Config{Program: "x", Env: map[string]string{"ESYNC_TASK_ID": "v"}}, "set by the action"},
		{"bad pass env name", execaction.Config{Program: "x", PassEnv: []string{""}}, "empty variable name"},
		{"env in both", execaction.Config{Program: "x", Env: map[string]string{"HOME": "/"}, PassEnv: []string{"HOME"}}, "both in Env and in PassEnv"},
		{"exit code zero", execaction.Config{Program: "x", PermanentExitCodes: []int{0}}, "not between 1 and 255"},
		{"exit code too big", execaction.Config{Program: "x", PermanentExitCodes: []int{256}}, "not between 1 and 255"},
		{"negative timeout", execaction.Config{Program: "x", Timeout: -1}, "negative"},
		{"negative output limit", execaction.Config{Program: "x", OutputLimit: -1}, "negative"},
	}
	for _, tc := range cases {
		_, err := execaction.New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}
