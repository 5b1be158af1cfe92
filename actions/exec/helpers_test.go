//go:build unix

package execaction_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/esync/queue"
)

// task builds a task the way the manager hands it to an action: RawData as
// stored, Data decoded from it.
func task(t *testing.T, rawJSON string) queue.Task {
	t.Helper()
	var data map[string]interface{}
	if err := json.Unmarshal([]byte(rawJSON), &data); err != nil {
		t.Fatalf("bad test data %s: %v", rawJSON, err)
	}
	return queue.Task{ID: 7, Key: "customer:42", Name: "customer.push", Attempt: 2, RawData: []byte(rawJSON), Data: data}
}

// script writes a /bin/sh script to a fresh directory and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "script.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func wantResult(t *testing.T, gotRes queue.TaskResult, gotMsg queue.TaskMessage, want queue.TaskResult, msgParts ...string) {
	t.Helper()
	if m := string(gotMsg); len(m) > 400 {
		t.Logf("%s: %q … %q", gotRes, m[:200], m[len(m)-200:])
	} else {
		t.Logf("%s: %q", gotRes, m)
	}
	if gotRes != want {
		t.Fatalf("result %s (%s), want %s", gotRes, gotMsg, want)
	}
	for _, p := range msgParts {
		if !strings.Contains(string(gotMsg), p) {
			t.Errorf("message %q does not contain %q", gotMsg, p)
		}
	}
}

// readPID waits for a script to write a process id into path and returns it.
func readPID(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		b, err := os.ReadFile(path)
		if err == nil && bytes.HasSuffix(b, []byte("\n")) {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("pid file %s holds %q", path, b)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid written to %s within a minute", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid is a running process. A zombie (dead, not yet
// reaped by whoever adopted it) counts as gone.
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err == nil {
		// The state follows the parenthesised command name.
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
			return stat[i+2] != 'Z' && stat[i+2] != 'X'
		}
		return true
	}
	if !errors.Is(err, os.ErrNotExist) {
		return syscall.Kill(pid, 0) == nil
	}
	return false
}

// waitGone waits until pid is no longer running and fails the test if it
// still is after a minute: a signal takes effect quickly, so only a process
// that was never signalled lasts that long.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d still runs a minute after the run ended", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nulSplit splits a file of NUL-terminated strings.
func nulSplit(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(string(b), "\x00")
	return parts[:len(parts)-1]
}
