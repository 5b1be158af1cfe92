package email

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/actions/internal/httpretry"
	"github.com/sendgrid/rest"
)

// classify turns SendGrid's answer into a task result; readErr is an error
// met while reading the answer's body, if any.
func classify(task queue.Task, resp *rest.Response, readErr error) (queue.TaskResult, string) {
	status := resp.StatusCode
	head := fmt.Sprintf("SendGrid answered %d %s", status, http.StatusText(status))
	switch {
	case status >= 200 && status < 300:
		msg := "sent: " + head
		if id := header(resp, "X-Message-Id"); id != "" {
			msg += ", message id " + id
		}
		return queue.TaskResultSuccess, msg
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500:
		msg := "not sent: " + head + ": " + errorDetail(resp, readErr)
		if d, ok := retryDelay(resp, time.Now()); ok {
			queue.RetryAfter(task, d)
			msg += fmt.Sprintf(" (retry after %s)", d)
		}
		return queue.TaskResultRetryFailure, msg
	case status >= 300 && status < 400:
		return queue.TaskResultPermanentFailure, fmt.Sprintf("not sent: %s redirecting to %q; check the host setting", head, header(resp, "Location"))
	default:
		return queue.TaskResultPermanentFailure, "not sent: " + head + ": " + errorDetail(resp, readErr)
	}
}

// errorDetail extracts SendGrid's error text: the messages of its JSON
// errors list with their fields, or else the start of the body.
func errorDetail(resp *rest.Response, readErr error) string {
	var answer struct {
		Errors []struct {
			Message string `json:"message"`
			Field   any    `json:"field"`
			Help    any    `json:"help"`
		} `json:"errors"`
	}
	if json.Unmarshal([]byte(resp.Body), &answer) == nil && len(answer.Errors) > 0 {
		parts := make([]string, 0, len(answer.Errors))
		for _, e := range answer.Errors {
			part := oneLine(e.Message, 500)
			if f, ok := e.Field.(string); ok && f != "" {
				part += " (field " + oneLine(f, 100) + ")"
			}
			parts = append(parts, part)
		}
		return strings.Join(parts, "; ")
	}
	if text := oneLine(resp.Body, 300); text != "" {
		return text
	}
	if readErr != nil {
		return "the answer could not be read: " + readErr.Error()
	}
	return "no error text"
}

// retryDelay reads how long SendGrid asks to wait: Retry-After in seconds
// or as an HTTP date, else (on 429) the X-RateLimit-Reset Unix time.
func retryDelay(resp *rest.Response, now time.Time) (time.Duration, bool) {
	if d, ok := httpretry.RetryAfter(header(resp, "Retry-After"), now); ok {
		return d, true
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		if v := header(resp, "X-RateLimit-Reset"); v != "" {
			if unix, err := strconv.ParseInt(v, 10, 64); err == nil {
				return httpretry.Until(time.Unix(unix, 0), now), true
			}
		}
	}
	return 0, false
}

func header(resp *rest.Response, name string) string {
	return strings.TrimSpace(http.Header(resp.Headers).Get(name))
}

// oneLine collapses s to a single line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
