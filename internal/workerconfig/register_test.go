package workerconfig

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// The configured actions run for real: an exec task inside lifecycle
// webhooks, a webhook task, a SQL task on the queue's database and an
// email through a SendGrid stand-in on loopback, with the API key from the
// environment.
func TestRegisteredActionsRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var mu sync.Mutex
	var calls []string
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, r.URL.Path)
		if r.URL.Path == "/v3/mail/send" {
			auth = r.Header.Get("Authorization")
		}
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()

	pg := queuetest.NewDriver(t)
	if _, err := pg.DB().ExecContext(ctx, `CREATE TABLE counter (n int); INSERT INTO counter VALUES (0)`); err != nil {
		t.Fatal(err)
	}
	src := strings.ReplaceAll(`
[tasks.hooked]
max_attempts = 1
[tasks.hooked.exec]
program = "/bin/sh"
args = ["-c", "exit 0"]
[tasks.hooked.hooks]
start = "SRV/start"
success = "SRV/success"
fail = "SRV/fail"

[tasks.post.webhook]
url = "SRV/post"
secret = "${HOOK_SECRET}"

[tasks.count.sql]
statement = "UPDATE counter SET n = n + :by"

[tasks.mail.email]
api_key = "${SENDGRID_API_KEY}"
host = "SRV"
`, "SRV", srv.URL)
	c, err := Parse("esync.toml", []byte(src), env(map[string]string{"SENDGRID_API_KEY": secret, "HOOK_SECRET": "h"}))
	if err != nil {
		t.Fatal(err)
	}
	sm := queue.NewSyncManager(pg, append(c.ManagerOptions(), queue.WithPollInterval(20*time.Millisecond))...)
	closeDBs, err := c.Register(sm, Options{DB: pg.DB()})
	if err != nil {
		t.Fatal(err)
	}
	defer closeDBs()
	tm := queue.NewTaskManager(pg)
	mail := map[string]any{"from": map[string]any{"email": "a@example.com"}, "to": []any{map[string]any{"email": "b@example.com"}},
		"subject": "hi", "text": "hello"}
	for name, data := range map[string]map[string]any{"hooked": {}, "post": {"x": 1}, "count": {"by": 5}, "mail": mail} {
		if _, err := tm.Add(ctx, name, name+":1", data); err != nil {
			t.Fatal(err)
		}
	}
	runCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := sm.RunUntilDone(runCtx); err != nil {
		t.Fatal(err)
	}
	tasks, err := tm.List(ctx, queue.TaskFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		if task.State != queue.TaskDone {
			t.Errorf("%s: %s %q", task.Name, task.State, task.Message)
		}
	}
	var n int
	if err := pg.DB().QueryRowContext(ctx, `SELECT n FROM counter`).Scan(&n); err != nil || n != 5 {
		t.Errorf("counter %d (%v), want 5", n, err)
	}
	mu.Lock()
	defer mu.Unlock()
	got := strings.Join(calls, " ")
	for _, path := range []string{"/start", "/success", "/post", "/v3/mail/send"} {
		if !strings.Contains(got, path) {
			t.Errorf("no call of %s (calls: %s)", path, got)
		}
	}
	if strings.Contains(got, "/fail") {
		t.Errorf("fail hook called: %s", got)
	}
	if auth != "Bearer "+secret {
		t.Errorf("SendGrid got Authorization %q", auth)
	}
}
