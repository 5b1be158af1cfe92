package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/actions/internal/httpretry"
)

// maxAnswerBytes bounds how much of an answer is read.
const maxAnswerBytes = 64 << 10

// sender posts signed JSON and classifies the answer. Action and Lifecycle
// share it.
type sender struct {
	secret  []byte
	timeout time.Duration
	client  *http.Client
}

func newSender(opts []Option) (*sender, error) {
	s := settings{timeout: DefaultTimeout}
	var problems []string
	for _, opt := range opts {
		if err := opt(&s); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	c := http.Client{}
	if s.client != nil {
		c = *s.client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &sender{secret: s.secret, timeout: s.timeout, client: &c}, nil
}

// target is a webhook URL and the form of it shown in messages: without
// user information or query, either of which may hold a token.
type target struct {
	raw, shown string
	hidden     []string // parts of raw that must not be shown
}

func parseTarget(raw string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return target{}, errors.New("not an absolute http or https URL")
	}
	t := target{raw: raw}
	if u.User != nil {
		if pw, ok := u.User.Password(); ok {
			t.hidden = append(t.hidden, pw)
		}
		t.hidden = append(t.hidden, u.User.String())
	}
	if u.RawQuery != "" {
		t.hidden = append(t.hidden, u.RawQuery)
	}
	shown := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	t.shown = shown.String()
	return t, nil
}

// answer is what came of one request.
type answer struct {
	status     int // 0: no answer
	result     queue.TaskResult
	text       string
	retryAfter time.Duration // when asked, for a RETRY result
	retryAsked bool
}

// ok reports a 2xx answer.
func (a answer) ok() bool { return a.result == queue.TaskResultSuccess }

// post sends body to t as event, within ctx and the configured timeout.
func (s *sender) post(ctx context.Context, t target, event string, taskID int64, body []byte) answer {
	if err := ctx.Err(); err != nil {
		return answer{result: queue.TaskResultRetryFailure, text: "not sent to " + t.shown + ": the run ended first (" + err.Error() + ")"}
	}
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, t.raw, bytes.NewReader(body))
	if err != nil {
		return answer{result: queue.TaskResultPermanentFailure, text: "cannot build the request to " + t.shown}
	}
	now := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "esync-webhook")
	req.Header.Set(HeaderEvent, event)
	req.Header.Set(HeaderTaskID, strconv.FormatInt(taskID, 10))
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now, 10))
	if len(s.secret) > 0 {
		req.Header.Set(HeaderSignature, Sign(s.secret, now, body))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return answer{result: queue.TaskResultRetryFailure, text: s.describeError(ctx, t, err)}
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	a := answer{status: resp.StatusCode, result: classify(resp.StatusCode)}
	a.text = fmt.Sprintf("%s answered %d %s", t.shown, resp.StatusCode, http.StatusText(resp.StatusCode))
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		a.text += " (redirects are not followed)"
	} else if detail := oneLine(string(text), 200); detail != "" && !a.ok() {
		a.text += ": " + detail
	}
	if a.result == queue.TaskResultRetryFailure {
		a.retryAfter, a.retryAsked = httpretry.RetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return a
}

// classify maps an answer's status to a result: 2xx succeeds; 408, 429
// and 5xx may succeed later; 400, other 4xx and redirects will not.
func classify(status int) queue.TaskResult {
	switch {
	case status >= 200 && status < 300:
		return queue.TaskResultSuccess
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500:
		return queue.TaskResultRetryFailure
	default:
		return queue.TaskResultPermanentFailure
	}
}

// describeError words a request that got no answer, without the URL's
// query or user information (net/http puts the whole URL in its errors).
func (s *sender) describeError(ctx context.Context, t target, err error) string {
	switch {
	case ctx.Err() != nil:
		return "no answer from " + t.shown + ": the run's deadline passed or it was cancelled (" + ctx.Err().Error() + ")"
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer from %s within %s", t.shown, s.timeout)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return "network error posting to " + t.shown + ": " + err.Error()
}

// redact removes the secret and the hidden parts of the URLs from msg.
func (s *sender) redact(msg string, targets ...target) string {
	hide := func(secret string) {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "[redacted]")
		}
	}
	hide(string(s.secret))
	for _, t := range targets {
		for _, h := range t.hidden {
			hide(h)
		}
	}
	return msg
}

// oneLine collapses s to a single line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
