package webhook_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/actions/webhook"
)

// recorded returns an action that notes its run in j and returns res, msg.
func recorded(j *journal, res queue.TaskResult, msg string) queue.TaskAction {
	return queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
		j.add("action")
		return res, queue.TaskMessage(msg)
	})
}

func hooksOn(r *receiver) webhook.Hooks {
	return webhook.Hooks{Start: r.URL("/start"), Success: r.URL("/success"), Fail: r.URL("/fail")}
}

func wrap(t *testing.T, h webhook.Hooks, action queue.TaskAction, opts ...webhook.Option) queue.TaskAction {
	t.Helper()
	mw, err := webhook.Lifecycle(h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return queue.Chain(action, mw)
}

func events(t *testing.T, r *receiver) []webhook.Event {
	t.Helper()
	var out []webhook.Event
	for _, req := range r.journal.Requests() {
		var e webhook.Event
		if err := json.Unmarshal(req.Body, &e); err != nil {
			t.Fatalf("%s body %s: %v", req.Path, req.Body, err)
		}
		if req.Header.Get(webhook.HeaderEvent) != e.Event {
			t.Errorf("%s: header event %q, body event %q", req.Path, req.Header.Get(webhook.HeaderEvent), e.Event)
		}
		out = append(out, e)
	}
	return out
}

func sameOrder(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}

// Start 2xx → the action runs; its success is reported → DONE.
func TestLifecycleSuccess(t *testing.T) {
	r := newReceiver(t, nil)
	act := wrap(t, hooksOn(r), recorded(r.journal, queue.TaskResultSuccess, "pushed"), webhook.WithSecret("s3"))
	res, msg := act.Do(taskOf(t, `{"n":1}`))
	expect(t, res, msg, queue.TaskResultSuccess)
	if msg != "pushed" {
		t.Errorf("message %q, want the action's own", msg)
	}
	sameOrder(t, r.journal.Entries(), "/start", "action", "/success")
	ev := events(t, r)
	if ev[0].Event != "start" || ev[0].Result != "" || ev[0].ID != 42 || ev[0].Key != "customer:7" || string(ev[0].Data) != `{"n":1}` {
		t.Errorf("start event %+v", ev[0])
	}
	if ev[1].Event != "success" || ev[1].Result != queue.TaskResultSuccess || ev[1].Message != "pushed" || ev[1].Attempt != 2 {
		t.Errorf("success event %+v", ev[1])
	}
	for _, req := range r.journal.Requests() {
		if err := webhook.Verify([]byte("s3"), req.Header, req.Body, time.Minute); err != nil {
			t.Errorf("%s: %v", req.Path, err)
		}
	}
}

// Start 400 → FAILED, the action does not run, nothing else is called.
func TestLifecycleStart400Abandons(t *testing.T) {
	r := newReceiver(t, map[string]http.HandlerFunc{"/start": status(400, "customer is gone")})
	res, msg := wrap(t, hooksOn(r), recorded(r.journal, queue.TaskResultSuccess, "x")).Do(taskOf(t, `{}`))
	expect(t, res, msg, queue.TaskResultPermanentFailure, "abandoned", "400 Bad Request: customer is gone", "did not run")
	sameOrder(t, r.journal.Entries(), "/start")
}

// Any other start failure → RETRY without running the action.
func TestLifecycleStartOtherFailuresRetry(t *testing.T) {
	for _, c := range []struct {
		name   string
		answer http.HandlerFunc
		closed bool
		want   string
		wait   time.Duration
	}{
		{name: "500", answer: status(500, "down"), want: "500 Internal Server Error"},
		{name: "404", answer: status(404, ""), want: "404 Not Found"},
		{name: "401", answer: status(401, ""), want: "401"},
		{name: "302", answer: status(302, "", "Location", "/elsewhere"), want: "302"},
		{name: "429 Retry-After", answer: status(429, "", "Retry-After", "90"), want: "retry after 1m30s", wait: 90 * time.Second},
		{name: "timeout", answer: hang(t), want: "within 50ms"},
		{name: "network error", closed: true, want: "network error"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newReceiver(t, map[string]http.HandlerFunc{"/start": c.answer})
			h := hooksOn(r)
			if c.closed {
				h.Start = closedPortURL(t, "/start")
			}
			task := taskOf(t, `{}`)
			res, msg := wrap(t, h, recorded(r.journal, queue.TaskResultSuccess, "x"), webhook.WithTimeout(50*time.Millisecond)).Do(task)
			expect(t, res, msg, queue.TaskResultRetryFailure, "not started", c.want, "did not run")
			for _, e := range r.journal.Entries() {
				if e != "/start" {
					t.Errorf("%s happened after a failed start", e)
				}
			}
			d, asked := queue.RequestedRetryDelay(task)
			if d != c.wait || asked != (c.wait > 0) {
				t.Errorf("retry delay %s (asked %v), want %s", d, asked, c.wait)
			}
		})
	}
}

// A failing success webhook is noted but the task stays DONE.
func TestLifecycleSuccessWebhookFailureKeepsDone(t *testing.T) {
	for _, code := range []int{400, 500} {
		r := newReceiver(t, map[string]http.HandlerFunc{"/success": status(code, "nope")})
		res, msg := wrap(t, hooksOn(r), recorded(r.journal, queue.TaskResultSuccess, "pushed")).Do(taskOf(t, `{}`))
		expect(t, res, msg, queue.TaskResultSuccess, "pushed; success webhook failed:", strings.TrimSpace(http.StatusText(code)), "nope")
		sameOrder(t, r.journal.Entries(), "/start", "action", "/success")
	}
}

// StrictSuccess follows sonic: 400 abandons, other failures run again.
func TestLifecycleStrictSuccess(t *testing.T) {
	for _, c := range []struct {
		name   string
		answer http.HandlerFunc
		want   queue.TaskResult
		text   string
		wait   time.Duration
	}{
		{"2xx", status(200, ""), queue.TaskResultSuccess, "pushed", 0},
		{"400", status(400, "refused"), queue.TaskResultPermanentFailure, "abandoned: success webhook", 0},
		{"503", status(503, "", "Retry-After", "7"), queue.TaskResultRetryFailure, "will run again", 7 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newReceiver(t, map[string]http.HandlerFunc{"/success": c.answer})
			h := hooksOn(r)
			h.StrictSuccess = true
			task := taskOf(t, `{}`)
			res, msg := wrap(t, h, recorded(r.journal, queue.TaskResultSuccess, "pushed")).Do(task)
			expect(t, res, msg, c.want, c.text)
			if d, _ := queue.RequestedRetryDelay(task); d != c.wait {
				t.Errorf("retry delay %s, want %s", d, c.wait)
			}
		})
	}
}

// A failed action is reported to the fail webhook; its result stands,
// whatever the fail webhook answers.
func TestLifecycleFailure(t *testing.T) {
	for _, c := range []struct {
		name   string
		result queue.TaskResult
		answer http.HandlerFunc
		note   string
	}{
		{"retry reported", queue.TaskResultRetryFailure, nil, ""},
		{"permanent reported", queue.TaskResultPermanentFailure, nil, ""},
		{"fail webhook down", queue.TaskResultRetryFailure, status(500, "down"), "; fail webhook failed: "},
		{"fail webhook 400", queue.TaskResultPermanentFailure, status(400, ""), "; fail webhook failed: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newReceiver(t, map[string]http.HandlerFunc{"/fail": c.answer})
			res, msg := wrap(t, hooksOn(r), recorded(r.journal, c.result, "crm said no")).Do(taskOf(t, `{}`))
			expect(t, res, msg, c.result, "crm said no"+c.note)
			if c.note == "" && msg != "crm said no" {
				t.Errorf("message %q changed", msg)
			}
			sameOrder(t, r.journal.Entries(), "/start", "action", "/fail")
			ev := events(t, r)
			if last := ev[len(ev)-1]; last.Event != "fail" || last.Result != c.result || last.Message != "crm said no" {
				t.Errorf("fail event %+v", last)
			}
		})
	}
}

// A panicking action is reported to the fail webhook and the panic goes on
// to the manager.
func TestLifecyclePanic(t *testing.T) {
	r := newReceiver(t, nil)
	act := wrap(t, hooksOn(r), queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
		r.journal.add("action")
		panic("boom")
	}))
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Errorf("recovered %v, want the action's panic", p)
			}
		}()
		act.Do(taskOf(t, `{}`))
		t.Error("the panic was swallowed")
	}()
	sameOrder(t, r.journal.Entries(), "/start", "action", "/fail")
	ev := events(t, r)
	if last := ev[len(ev)-1]; last.Result != queue.TaskResultRetryFailure || last.Message != "panic: boom" {
		t.Errorf("fail event %+v", last)
	}
}

// Only the configured webhooks are called.
func TestLifecyclePartialHooks(t *testing.T) {
	r := newReceiver(t, nil)
	only := webhook.Hooks{Fail: r.URL("/fail")}
	res, _ := wrap(t, only, recorded(r.journal, queue.TaskResultSuccess, "ok")).Do(taskOf(t, `{}`))
	res2, _ := wrap(t, only, recorded(r.journal, queue.TaskResultRetryFailure, "no")).Do(taskOf(t, `{}`))
	if res != queue.TaskResultSuccess || res2 != queue.TaskResultRetryFailure {
		t.Errorf("results %s %s", res, res2)
	}
	sameOrder(t, r.journal.Entries(), "action", "action", "/fail")
}

// Task data that is not JSON: nothing is called, the task fails.
func TestLifecycleBadTaskData(t *testing.T) {
	r := newReceiver(t, nil)
	res, msg := wrap(t, hooksOn(r), recorded(r.journal, queue.TaskResultSuccess, "x")).Do(taskOf(t, `{"x":`))
	expect(t, res, msg, queue.TaskResultPermanentFailure, "not valid JSON")
	sameOrder(t, r.journal.Entries())
}

func TestLifecycleRejectsBadConfiguration(t *testing.T) {
	for name, c := range map[string]struct {
		h    webhook.Hooks
		opts []webhook.Option
		want string
	}{
		"no urls":      {webhook.Hooks{}, nil, "no webhook URL given"},
		"bad start":    {webhook.Hooks{Start: "start"}, nil, "start url: not an absolute"},
		"bad fail":     {webhook.Hooks{Success: "https://x.example", Fail: "mailto:a@b"}, nil, "fail url"},
		"bad option":   {webhook.Hooks{Fail: "https://x.example"}, []webhook.Option{webhook.WithTimeout(0)}, "not positive"},
		"strict alone": {webhook.Hooks{StrictSuccess: true}, nil, "no webhook URL given"},
	} {
		if _, err := webhook.Lifecycle(c.h, c.opts...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, c.want)
		}
	}
}
