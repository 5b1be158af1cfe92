package queue_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
)

// jsonLogLines decodes the JSON log lines written so far.
func jsonLogLines(t *testing.T, buf *syncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// TestLogsCarryTaskAttributes: finished runs and errors about a task are
// logged with the task's id, name, key, attempt and stream as attributes,
// and with the run's result, duration and message.
func TestLogsCarryTaskAttributes(t *testing.T) {
	t.Parallel()
	e := newSMEnv(t)
	var buf syncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sm := queue.NewSyncManager(e.d, queue.WithLogger(logger))
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		if task.Attempt == 1 {
			return queue.TaskResultRetryFailure, "CRM answered 503"
		}
		for !strings.Contains(buf.String(), "still running") { // an error about the task, logged
			time.Sleep(10 * time.Millisecond)
		}
		return queue.TaskResultSuccess, "synced"
	}), "crm.update", queue.InStream("crm"), queue.WithTimeout(20*time.Millisecond), queue.WithRetryPolicy(queue.ConstantBackoff(10*time.Millisecond)))
	id := e.add(t, "crm.update", "customer:42", nil)
	smRunUntilDone(t, sm, time.Minute)
	var finished, errs []map[string]any
	for _, l := range jsonLogLines(t, &buf) {
		switch l["msg"] {
		case "esync: task finished":
			finished = append(finished, l)
		case "esync: error":
			errs = append(errs, l)
		}
	}
	if len(finished) != 2 {
		t.Fatalf("%d finished-task lines, want 2:\n%s", len(finished), buf.String())
	}
	for i, want := range []struct {
		result, level string
		attempt       float64
	}{{"RETRY", "INFO", 1}, {"DONE", "DEBUG", 2}} {
		l := finished[i]
		if l["task_id"] != float64(id) || l["name"] != "crm.update" || l["key"] != "customer:42" || l["stream"] != "crm" ||
			l["attempt"] != want.attempt || l["result"] != want.result || l["level"] != want.level || l["duration"] == nil {
			t.Fatalf("finished line %d: %v; want task %d crm.update customer:42 in crm, attempt %v, %s at %s, with a duration", i, l, id, want.attempt, want.result, want.level)
		}
	}
	if finished[0]["message"] != "CRM answered 503" || finished[0]["retry_in"] == nil {
		t.Fatalf("the retry's line %v, want its message and its wait", finished[0])
	}
	if len(errs) == 0 || errs[0]["task_id"] != float64(id) || errs[0]["attempt"] != float64(2) || !strings.Contains(errs[0]["error"].(string), "still running") {
		t.Fatalf("error lines %v, want the overrun with the task's attributes", errs)
	}
}

// TestLogsNeverShowPassword: with the database unreachable, what the
// manager logs about failed claims and the listening connection never
// contains the DSN's password.
func TestLogsNeverShowPassword(t *testing.T) {
	t.Parallel()
	const secret = "pa55-w0rd-s3cret"
	d, err := queue.OpenPostgres("postgres://esync:" + secret + "@127.0.0.1:1/esync?sslmode=disable&connect_timeout=2")
	requireNoError(t, err)
	defer d.Close()
	var buf syncBuffer
	sm := queue.NewSyncManager(d, queue.WithPollInterval(20*time.Millisecond),
		queue.WithLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	sm.RegisterTaskHandler(succeed, "job")
	requireNoError(t, sm.Start(context.Background()))
	smEventually(t, 30*time.Second, "claim and listen errors logged", func() bool {
		s := buf.String()
		return strings.Contains(s, "claim") && strings.Contains(s, "listen")
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	sm.Shutdown(ctx)
	if strings.Contains(buf.String(), secret) {
		t.Fatalf("the password reached the log:\n%s", buf.String())
	}
}
