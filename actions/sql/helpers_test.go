package sqlaction_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"strings"
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
	return queue.Task{ID: 1, Key: "test:1", Name: "test", Attempt: 1, RawData: []byte(rawJSON), Data: data}
}

// mustExec runs setup statements and fails the test on error.
func mustExec(t *testing.T, db interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := db.ExecContext(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// waitUntil polls query (a SELECT of one boolean) until it is true. It fails
// the test if that takes more than a minute, which only happens when the
// behaviour under test is broken.
func waitUntil(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var ok bool
		if err := db.QueryRow(query, args...).Scan(&ok); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within a minute: %s", query)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// result is what Do returned, sent over a channel from a goroutine.
type result struct {
	res queue.TaskResult
	msg queue.TaskMessage
}

// doAsync runs a.Do(tk) in a goroutine.
func doAsync(a queue.TaskAction, tk queue.Task) <-chan result {
	ch := make(chan result, 1)
	go func() {
		r, m := a.Do(tk)
		ch <- result{r, m}
	}()
	return ch
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// withUser returns dsn logging in as user with password instead.
func withUser(dsn, user, password string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.User = url.UserPassword(user, password)
		q := u.Query()
		q.Del("user")
		q.Del("password")
		u.RawQuery = q.Encode()
		return u.String()
	}
	// In key=value form a later key overrides an earlier one.
	return strings.TrimSpace(dsn) + " user=" + user + " password=" + password
}

func wantResult(t *testing.T, gotRes queue.TaskResult, gotMsg queue.TaskMessage, want queue.TaskResult, msgParts ...string) {
	t.Helper()
	t.Logf("%s: %s", gotRes, gotMsg)
	if gotRes != want {
		t.Fatalf("result %s (%s), want %s", gotRes, gotMsg, want)
	}
	for _, p := range msgParts {
		if !strings.Contains(string(gotMsg), p) {
			t.Errorf("message %q does not contain %q", gotMsg, p)
		}
	}
}
