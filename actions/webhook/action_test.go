package webhook_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/actions/webhook"
)

func expect(t *testing.T, res queue.TaskResult, msg queue.TaskMessage, want queue.TaskResult, fragments ...string) {
	t.Helper()
	if res != want {
		t.Fatalf("result %s (%s), want %s", res, msg, want)
	}
	for _, f := range fragments {
		if !strings.Contains(string(msg), f) {
			t.Errorf("message %q does not contain %q", msg, f)
		}
	}
}

func newAction(t *testing.T, url string, opts ...webhook.Option) *webhook.Action {
	t.Helper()
	a, err := webhook.New(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// 2xx → DONE; the body is the task as JSON, with its data as stored.
func TestDeliveredIsDone(t *testing.T) {
	r := newReceiver(t, nil)
	data := `{"name": "Ann", "tags": ["a", "b"], "n": 1.50}`
	res, msg := newAction(t, r.URL("/hook")).Do(taskOf(t, data))
	expect(t, res, msg, queue.TaskResultSuccess, "delivered", "204 No Content")

	reqs := r.journal.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	got := reqs[0]
	if got.Method != http.MethodPost || got.Path != "/hook" || got.Header.Get("Content-Type") != "application/json" {
		t.Errorf("request %s %s %q", got.Method, got.Path, got.Header.Get("Content-Type"))
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(got.Body, &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"id": "42", "name": `"crm.push"`, "key": `"customer:7"`, "data": `{"name":"Ann","tags":["a","b"],"n":1.50}`, "attempt": "2", "max_attempts": "5"}
	for k, v := range want {
		if string(body[k]) != v {
			t.Errorf("body %s = %s, want %s", k, body[k], v)
		}
	}
	if got.Header.Get(webhook.HeaderEvent) != "task" || got.Header.Get(webhook.HeaderTaskID) != "42" || got.Header.Get(webhook.HeaderTimestamp) == "" {
		t.Errorf("headers %v", got.Header)
	}
	if got.Header.Get(webhook.HeaderSignature) != "" {
		t.Error("signed without a secret")
	}
}

// Task data given only as the decoded map, or not at all, is still sent.
func TestDataWithoutRawData(t *testing.T) {
	r := newReceiver(t, nil)
	a := newAction(t, r.URL("/hook"))
	task := queue.Task{ID: 1, Name: "n", Key: "k", Data: map[string]any{"x": 1.0}}
	if res, msg := a.Do(task); res != queue.TaskResultSuccess {
		t.Fatal(res, msg)
	}
	if res, msg := a.Do(queue.Task{ID: 2, Name: "n", Key: "k"}); res != queue.TaskResultSuccess {
		t.Fatal(res, msg)
	}
	reqs := r.journal.Requests()
	var first, second webhook.TaskPayload
	json.Unmarshal(reqs[0].Body, &first)
	json.Unmarshal(reqs[1].Body, &second)
	if string(first.Data) != `{"x":1}` || string(second.Data) != `{}` {
		t.Errorf("data %s and %s", first.Data, second.Data)
	}
}

// Task data that is not JSON → FAILED, nothing sent.
func TestBadTaskDataIsFailedUnsent(t *testing.T) {
	r := newReceiver(t, nil)
	res, msg := newAction(t, r.URL("/hook")).Do(taskOf(t, `{"half":`))
	expect(t, res, msg, queue.TaskResultPermanentFailure, "not sent", "not valid JSON")
	if n := len(r.journal.Requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

// Every answer row: 2xx DONE; 400 and other 4xx FAILED; 408, 429, 5xx
// RETRY, no sooner than Retry-After.
func TestAnswers(t *testing.T) {
	date := time.Now().Add(3 * time.Minute).UTC().Format(http.TimeFormat)
	for _, c := range []struct {
		name             string
		answer           http.HandlerFunc
		want             queue.TaskResult
		minWait, maxWait time.Duration // 0, 0: no delay asked
		fragments        []string
	}{
		{"200", status(200, "ok"), queue.TaskResultSuccess, 0, 0, []string{"200 OK"}},
		{"202", status(202, ""), queue.TaskResultSuccess, 0, 0, []string{"202 Accepted"}},
		{"400 abandons", status(400, "unknown customer", "Retry-After", "5"), queue.TaskResultPermanentFailure, 0, 0, []string{"refused", "400 Bad Request: unknown customer"}},
		{"401", status(401, "who are you"), queue.TaskResultPermanentFailure, 0, 0, []string{"401 Unauthorized: who are you"}},
		{"404", status(404, "no such hook"), queue.TaskResultPermanentFailure, 0, 0, []string{"404 Not Found"}},
		{"422", status(422, "bad field"), queue.TaskResultPermanentFailure, 0, 0, []string{"422"}},
		{"408", status(408, ""), queue.TaskResultRetryFailure, 0, 0, []string{"not delivered", "408 Request Timeout"}},
		{"429 Retry-After seconds", status(429, "slow down", "Retry-After", "45"), queue.TaskResultRetryFailure, 45 * time.Second, 45 * time.Second, []string{"429 Too Many Requests: slow down", "retry after 45s"}},
		{"429 Retry-After date", status(429, "", "Retry-After", date), queue.TaskResultRetryFailure, 2 * time.Minute, 3 * time.Minute, []string{"429"}},
		{"500", status(500, "boom"), queue.TaskResultRetryFailure, 0, 0, []string{"500 Internal Server Error: boom"}},
		{"502", status(502, ""), queue.TaskResultRetryFailure, 0, 0, []string{"502 Bad Gateway"}},
		{"503 Retry-After", status(503, "maintenance", "Retry-After", "600"), queue.TaskResultRetryFailure, 10 * time.Minute, 10 * time.Minute, []string{"503 Service Unavailable"}},
		{"503 bad Retry-After", status(503, "", "Retry-After", "soon"), queue.TaskResultRetryFailure, 0, 0, []string{"503"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newReceiver(t, map[string]http.HandlerFunc{"/hook": c.answer})
			task := taskOf(t, `{}`)
			res, msg := newAction(t, r.URL("/hook")).Do(task)
			expect(t, res, msg, c.want, c.fragments...)
			d, asked := queue.RequestedRetryDelay(task)
			if c.maxWait == 0 {
				if asked {
					t.Errorf("asked for a %s delay", d)
				}
				return
			}
			if !asked || d < c.minWait || d > c.maxWait {
				t.Errorf("delay %s (asked %v), want between %s and %s", d, asked, c.minWait, c.maxWait)
			}
		})
	}
}

// A redirect is not followed (it would turn the POST into a GET) → FAILED.
func TestRedirectIsFailed(t *testing.T) {
	elsewhere := newReceiver(t, nil)
	r := newReceiver(t, map[string]http.HandlerFunc{"/hook": func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, elsewhere.URL("/moved"), http.StatusFound)
	}})
	res, msg := newAction(t, r.URL("/hook")).Do(taskOf(t, `{}`))
	expect(t, res, msg, queue.TaskResultPermanentFailure, "302 Found", "not followed")
	if n := len(elsewhere.journal.Requests()); n != 0 {
		t.Errorf("redirect followed: %d requests at the new location", n)
	}
}

// No answer within the configured timeout → RETRY.
func TestTimeoutIsRetried(t *testing.T) {
	r := newReceiver(t, map[string]http.HandlerFunc{"/hook": hang(t)})
	res, msg := newAction(t, r.URL("/hook"), webhook.WithTimeout(50*time.Millisecond)).Do(taskOf(t, `{}`))
	expect(t, res, msg, queue.TaskResultRetryFailure, "no answer", "within 50ms")
}

// The task's deadline bounds the request too → RETRY.
func TestTaskDeadlineIsRetried(t *testing.T) {
	r := newReceiver(t, map[string]http.HandlerFunc{"/hook": hang(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	res, msg := newAction(t, r.URL("/hook")).Do(taskOf(t, `{}`).WithContext(ctx))
	expect(t, res, msg, queue.TaskResultRetryFailure, "deadline", "context deadline exceeded")
}

// A cancelled run sends nothing → RETRY.
func TestCancelledRunSendsNothing(t *testing.T) {
	r := newReceiver(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, msg := newAction(t, r.URL("/hook")).Do(taskOf(t, `{}`).WithContext(ctx))
	expect(t, res, msg, queue.TaskResultRetryFailure, "not sent", "context canceled")
	if n := len(r.journal.Requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

// A network error → RETRY.
func TestNetworkErrorIsRetried(t *testing.T) {
	res, msg := newAction(t, closedPortURL(t, "/hook")).Do(taskOf(t, `{}`))
	expect(t, res, msg, queue.TaskResultRetryFailure, "network error", "connection refused")
}

func TestNewRejectsBadConfiguration(t *testing.T) {
	for name, c := range map[string]struct {
		url  string
		opts []webhook.Option
		want string
	}{
		"relative url": {"/hook", nil, "absolute http or https URL"},
		"ftp url":      {"ftp://example.com/x", nil, "absolute http or https URL"},
		"empty secret": {"https://example.com", []webhook.Option{webhook.WithSecret("")}, "empty secret"},
		"zero timeout": {"https://example.com", []webhook.Option{webhook.WithTimeout(0)}, "not positive"},
		"nil client":   {"https://example.com", []webhook.Option{webhook.WithHTTPClient(nil)}, "nil HTTP client"},
		"two problems": {"https://example.com", []webhook.Option{webhook.WithTimeout(-1), webhook.WithSecret("")}, "not positive; empty secret"},
	} {
		if _, err := webhook.New(c.url, c.opts...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, c.want)
		}
	}
}

// WithHTTPClient's client is used, and still does not follow redirects.
func TestCustomHTTPClient(t *testing.T) {
	elsewhere := newReceiver(t, nil)
	r := newReceiver(t, map[string]http.HandlerFunc{"/hook": func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, elsewhere.URL("/moved"), http.StatusTemporaryRedirect)
	}})
	used := 0
	c := &http.Client{Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
		used++
		return http.DefaultTransport.RoundTrip(req)
	})}
	res, msg := newAction(t, r.URL("/hook"), webhook.WithHTTPClient(c)).Do(taskOf(t, `{}`))
	expect(t, res, msg, queue.TaskResultPermanentFailure, "307")
	if used != 1 || len(elsewhere.journal.Requests()) != 0 {
		t.Errorf("client used %d times, %d requests followed the redirect", used, len(elsewhere.journal.Requests()))
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
