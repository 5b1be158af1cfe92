package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// esync runs the CLI against dsn and returns what it printed.
func esync(t *testing.T, dsn string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"--dsn", dsn}, args...), &out)
	return out.String(), err
}

func TestCLI(t *testing.T) {
	dsn := queuetest.NewDSN(t)
	out, err := esync(t, dsn, "migrate")
	if err != nil || !strings.Contains(out, "public.message_queue at migration") {
		t.Fatalf("migrate: %q %v", out, err)
	}
	if out, err = esync(t, dsn, "enqueue", "crm.update", "customer:1", `{"name":"Ada"}`); err != nil || out != "added task 1\n" {
		t.Fatalf("enqueue: %q %v", out, err)
	}
	if _, err = esync(t, dsn, "enqueue", "crm.update", "customer:1", `{"name":"Ada L"}`); err != nil {
		t.Fatal(err)
	}
	if _, err = esync(t, dsn, "enqueue", "crm.update", "customer:2", `[1,2]`); !errors.Is(err, queue.ErrInvalidTask) {
		t.Fatalf("a JSON array was accepted as task data: %v", err)
	}
	out, err = esync(t, dsn, "inspect", "--key", "customer:1")
	if err != nil || strings.Count(out, "crm.update") != 2 {
		t.Fatalf("inspect: %q %v", out, err)
	}
	out, err = esync(t, dsn, "inspect", "2")
	if err != nil || !strings.Contains(out, `"name": "Ada L"`) {
		t.Fatalf("inspect 2: %q %v", out, err)
	}
	if out, err = esync(t, dsn, "cancel", "1"); err != nil || out != "cancelled task 1\n" {
		t.Fatalf("cancel: %q %v", out, err)
	}
	if out, err = esync(t, dsn, "cancel", "--key", "customer:1"); err != nil || out != "cancelled 1 tasks of key \"customer:1\"\n" {
		t.Fatalf("cancel --key: %q %v", out, err)
	}
	if out, err = esync(t, dsn, "retry", "2"); err != nil || out != "task 2 is READY again\n" {
		t.Fatalf("retry: %q %v", out, err)
	}
	out, err = esync(t, dsn, "counts")
	if err != nil || !strings.Contains(out, "READY        1") || !strings.Contains(out, "CANCELLED    1") {
		t.Fatalf("counts: %q %v", out, err)
	}
	for _, bad := range [][]string{{"retry", "x"}, {"inspect", "--state", "NOPE"}, {"frobnicate"}, {"enqueue", "only-name"}} {
		if _, err := esync(t, dsn, bad...); err == nil {
			t.Errorf("esync %v: no error", bad)
		}
	}
	if _, err := esync(t, dsn, "--table", "x; DROP TABLE y", "migrate"); !errors.Is(err, queue.ErrInvalidIdentifier) {
		t.Errorf("hostile table name: %v", err)
	}
}
