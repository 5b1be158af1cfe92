package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue/examples/internal/userdb"
)

// TestReconcile runs the example for a few seconds: run fails unless the
// reconciliation ran and the totals match the orders. It runs against a
// user's database with customer and orders tables of their own, as a role
// that may not create databases, and leaves everything of theirs untouched.
func TestReconcile(t *testing.T) {
	user := userdb.New(t, true)
	t.Setenv("DATABASE_URL", user.DSN)
	defer user.RequireUntouched(t)
	if err := run(context.Background(), 3*time.Second, "* * * * * *", false); err != nil {
		t.Fatal(err)
	}
}

// Ctrl-C stops the example, drops its schema and exits 130.
func TestReconcileInterrupted(t *testing.T) {
	user := userdb.New(t, true)
	bin := filepath.Join(t.TempDir(), "reconcile")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-for", "10m")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+user.DSN)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "running for") {
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 130 || !strings.Contains(stderr.String(), "interrupted") {
		t.Fatalf("exit %v, want 130\n%s", err, stderr.String())
	}
	user.RequireUntouched(t)
}
