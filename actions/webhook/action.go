package webhook

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/esync/queue"
)

// Action posts each task it runs, as a TaskPayload in JSON, to one URL. It
// is a queue.TaskAction, safe for concurrent use.
//
// A 2xx answer makes the task DONE. 400 makes it FAILED (the receiver
// abandons it, as sonic's webhooks do), and so does any other 4xx or a
// redirect, which is not followed. 408, 429, 5xx, timeouts and network
// errors make it RETRY, no sooner than a Retry-After header asks (capped at
// a day).
type Action struct {
	url target
	s   *sender
}

// New returns an Action that posts to url, which must be an absolute http
// or https URL.
func New(url string, opts ...Option) (*Action, error) {
	t, err := parseTarget(url)
	if err != nil {
		return nil, fmt.Errorf("webhook: url: %v", err)
	}
	s, err := newSender(opts)
	if err != nil {
		return nil, fmt.Errorf("webhook: %v", err)
	}
	return &Action{url: t, s: s}, nil
}

// Do posts the task and classifies the answer.
func (a *Action) Do(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
	res, msg := a.do(task)
	return res, queue.TaskMessage(a.s.redact(msg, a.url))
}

func (a *Action) do(task queue.Task) (queue.TaskResult, string) {
	p, err := payloadOf(task)
	if err != nil {
		return queue.TaskResultPermanentFailure, "not sent: " + err.Error()
	}
	body, err := json.Marshal(p)
	if err != nil {
		return queue.TaskResultPermanentFailure, "not sent: " + err.Error()
	}
	ans := a.s.post(task.Context(), a.url, EventTask, task.ID, body)
	switch ans.result {
	case queue.TaskResultSuccess:
		return ans.result, "delivered: " + ans.text
	case queue.TaskResultRetryFailure:
		msg := "not delivered: " + ans.text
		if ans.retryAsked {
			queue.RetryAfter(task, ans.retryAfter)
			msg += fmt.Sprintf(" (retry after %s)", ans.retryAfter)
		}
		return ans.result, msg
	default:
		return ans.result, "refused: " + ans.text
	}
}

// String describes the action without its secret or the URL's query.
func (a Action) String() string {
	if a.s == nil {
		return "webhook.Action{}"
	}
	return fmt.Sprintf("webhook.Action{url: %s, timeout: %s, signed: %t}", a.url.shown, a.s.timeout, len(a.s.secret) > 0)
}

// Format prints the action as String does, whatever the verb, so the
// secret cannot reach a log line through fmt.
func (a Action) Format(f fmt.State, verb rune) { io.WriteString(f, a.String()) }
