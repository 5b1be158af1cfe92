package webhook

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/esync/queue"
)

// Hooks are the URLs of the lifecycle webhooks; each is optional, but at
// least one must be set.
type Hooks struct {
	// Start is called before the action runs. A 2xx answer lets it run; a
	// 400 abandons the task (FAILED) without running it; anything else,
	// including no answer, makes the task RETRY without running it.
	Start string
	// Success is called after the action succeeded.
	Success string
	// Fail is called after the action failed, with its result (RETRY or
	// ERROR) and message, and when it panicked.
	Fail string
	// StrictSuccess makes the success webhook decide, as in sonic: a 400
	// answer then abandons the task (FAILED) and any other failure makes it
	// RETRY, so the action runs again. Use it only for idempotent actions
	// whose success must be acknowledged. Without it, a failed success
	// webhook is noted in the task message and the task stays DONE.
	StrictSuccess bool
}

// Lifecycle returns middleware that calls the webhooks in h around the
// action it wraps (see Hooks for what each answer means). Every call
// posts an Event as JSON, signed like the Action's requests, within the
// task's context and the configured timeout. The fail webhook's answer
// never changes the result; its failure is noted in the task message.
func Lifecycle(h Hooks, opts ...Option) (queue.Middleware, error) {
	var l lifecycle
	var problems []string
	for _, u := range []struct {
		name string
		raw  string
		dst  **target
	}{{"start", h.Start, &l.start}, {"success", h.Success, &l.success}, {"fail", h.Fail, &l.fail}} {
		if u.raw == "" {
			continue
		}
		t, err := parseTarget(u.raw)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s url: %v", u.name, err))
			continue
		}
		*u.dst = &t
	}
	if h.Start == "" && h.Success == "" && h.Fail == "" {
		problems = append(problems, "no webhook URL given")
	}
	s, err := newSender(opts)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("webhook: lifecycle: %s", strings.Join(problems, "; "))
	}
	l.s, l.strict = s, h.StrictSuccess
	return func(next queue.TaskAction) queue.TaskAction {
		c := l
		c.next = next
		return &c
	}, nil
}

type lifecycle struct {
	start, success, fail *target
	strict               bool
	s                    *sender
	next                 queue.TaskAction
}

// Do calls the start webhook, the wrapped action, then the success or fail
// webhook.
func (l *lifecycle) Do(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
	res, msg := l.do(task)
	return res, queue.TaskMessage(l.s.redact(msg, l.targets()...))
}

func (l *lifecycle) do(task queue.Task) (queue.TaskResult, string) {
	p, err := payloadOf(task)
	if err != nil {
		return queue.TaskResultPermanentFailure, "not started: " + err.Error()
	}
	if l.start != nil {
		ans := l.notify(task, l.start, Event{TaskPayload: p, Event: EventStart})
		switch {
		case ans.ok():
		case ans.status == http.StatusBadRequest:
			return queue.TaskResultPermanentFailure, "abandoned: start webhook: " + ans.text + "; the action did not run"
		default:
			return queue.TaskResultRetryFailure, "not started: start webhook: " + ans.text + l.askRetry(task, ans) + "; the action did not run"
		}
	}

	res, amsg := l.run(task, p)
	msg := string(amsg)
	if res == queue.TaskResultSuccess {
		if l.success == nil {
			return res, msg
		}
		ans := l.notify(task, l.success, Event{TaskPayload: p, Event: EventSuccess, Result: res, Message: msg})
		switch {
		case ans.ok():
			return res, msg
		case !l.strict:
			return res, msg + "; success webhook failed: " + ans.text
		case ans.status == http.StatusBadRequest:
			return queue.TaskResultPermanentFailure, msg + "; abandoned: success webhook: " + ans.text
		default:
			return queue.TaskResultRetryFailure, msg + "; not acknowledged, will run again: success webhook: " + ans.text + l.askRetry(task, ans)
		}
	}
	if l.fail != nil {
		if ans := l.notify(task, l.fail, Event{TaskPayload: p, Event: EventFail, Result: res, Message: msg}); !ans.ok() {
			msg += "; fail webhook failed: " + ans.text
		}
	}
	return res, msg
}

// run runs the wrapped action. If it panics, the fail webhook hears of it
// before the panic goes on to the manager, which recovers it.
func (l *lifecycle) run(task queue.Task, p TaskPayload) (queue.TaskResult, queue.TaskMessage) {
	if l.fail != nil {
		defer func() {
			if r := recover(); r != nil {
				l.notify(task, l.fail, Event{TaskPayload: p, Event: EventFail, Result: queue.TaskResultRetryFailure, Message: fmt.Sprint("panic: ", r)})
				panic(r)
			}
		}()
	}
	return l.next.Do(task)
}

func (l *lifecycle) notify(task queue.Task, t *target, e Event) answer {
	body, err := json.Marshal(e)
	if err != nil {
		return answer{result: queue.TaskResultPermanentFailure, text: "cannot encode the event: " + err.Error()}
	}
	return l.s.post(task.Context(), *t, e.Event, task.ID, body)
}

// askRetry passes on a Retry-After the webhook asked for, and says so.
func (l *lifecycle) askRetry(task queue.Task, ans answer) string {
	if !ans.retryAsked {
		return ""
	}
	queue.RetryAfter(task, ans.retryAfter)
	return fmt.Sprintf(" (retry after %s)", ans.retryAfter)
}

func (l *lifecycle) targets() []target {
	var out []target
	for _, t := range []*target{l.start, l.success, l.fail} {
		if t != nil {
			out = append(out, *t)
		}
	}
	return out
}
