package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/esync/queue"
)

// defaultCRMTimeout bounds one request to the CRM when no timeout is given.
const defaultCRMTimeout = 10 * time.Second

// maxCRMRetryAfter caps the wait a Retry-After header can ask for.
const maxCRMRetryAfter = time.Hour

// maxCRMAnswerBytes bounds how much of an answer is read (a bulk answer
// holds a result per record).
const maxCRMAnswerBytes = 1 << 20

// crmAction applies one CDC task to the CRM. It is a queue.TaskAction, safe
// for concurrent use.
//
// create POSTs the contact, and PUTs it when the CRM answers 409 (it may
// already hold it after an answer got lost); update PUTs it, and POSTs it
// when the CRM answers 404 (created and updated before the create ran);
// delete DELETEs it, and a 404 counts as done (already gone).
//
// A 2xx answer makes the task DONE. 408, 409, 425, 429 and 5xx answers,
// timeouts and network errors make it RETRY, no sooner than a Retry-After
// header asks. 400, 401, 403, 422, any other 4xx and redirects make it
// FAILED with the CRM's error text. Task data that cannot be used makes it
// FAILED before anything is sent. The token never appears in a message.
type crmAction struct {
	base    *url.URL
	token   string
	timeout time.Duration
	client  *http.Client
}

// newCRMAction returns a crmAction for the CRM at baseURL (scheme, host and
// an optional path prefix before /v1), authenticating with token. timeout
// bounds each request; 0 means ten seconds.
func newCRMAction(baseURL, token string, timeout time.Duration) (*crmAction, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("crm client: base URL %q is not an http(s) URL with a host", redactCRMURL(baseURL))
	}
	switch {
	case token == "":
		return nil, errors.New("crm client: empty token")
	case strings.ContainsAny(token, " \t\r\n"):
		return nil, errors.New("crm client: the token contains spaces or line breaks")
	case timeout < 0:
		return nil, fmt.Errorf("crm client: negative timeout %s", timeout)
	case timeout == 0:
		timeout = defaultCRMTimeout
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return &crmAction{
		base:    u,
		token:   token,
		timeout: timeout,
		client: &http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// cdcTask is the data of one CDC task. Fields beyond these are ignored.
type cdcTask struct {
	ObjectID json.RawMessage `json:"object_id"` // our customer id, a string or a number
	Action   string          `json:"action"`    // create, update or delete
	Hash     string          `json:"hash"`      // the row's CDC hash; not sent to the CRM
	Row      *cdcRow         `json:"row"`       // absent for delete
}

// cdcRow holds the tracked columns of one customer; other columns are
// ignored.
type cdcRow struct {
	ID    json.RawMessage `json:"id"`
	Name  *string         `json:"name"`
	Email *string         `json:"email"`
	Tier  *string         `json:"tier"`
}

// crmChange is a CDC task checked and ready to send.
type crmChange struct {
	externalID string
	action     string
	row        cdcRow
}

// contactBody is what create and update send.
type contactBody struct {
	ExternalID string `json:"external_id,omitempty"`
	Name       string `json:"name"`
	Email      string `json:"email"`
	Tier       string `json:"tier"`
}

// crmAnswer is one answer of the CRM.
type crmAnswer struct {
	method, path string
	status       int
	header       http.Header
	body         []byte
}

// Do applies the task's change to the CRM and classifies the outcome.
func (a *crmAction) Do(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
	res, msg := a.do(task)
	return res, queue.TaskMessage(a.redact(msg))
}

// do is Do before the token is redacted from the message.
func (a *crmAction) do(task queue.Task) (queue.TaskResult, string) {
	ch, err := decodeCRMChange(task)
	if err != nil {
		return queue.TaskResultPermanentFailure, "not sent: bad task data: " + err.Error()
	}
	if err := task.Context().Err(); err != nil {
		return queue.TaskResultRetryFailure, "not sent: the run ended before sending (" + err.Error() + ")"
	}
	switch ch.action {
	case "create":
		return a.create(task, ch)
	case "update":
		return a.update(task, ch)
	default:
		return a.remove(task, ch)
	}
}

// create POSTs the contact, falling back to a PUT on 409.
func (a *crmAction) create(task queue.Task, ch crmChange) (queue.TaskResult, string) {
	ans, err := a.call(task.Context(), http.MethodPost, "/v1/contacts", ch.body(true))
	if err != nil {
		return a.noAnswer(task.Context(), http.MethodPost, "/v1/contacts", err)
	}
	if ans.status != http.StatusConflict {
		return a.classify(task, ans, "created contact "+ch.externalID+" in the CRM")
	}
	path := ch.path()
	again, err := a.call(task.Context(), http.MethodPut, path, ch.body(false))
	switch {
	case err != nil:
		return a.noAnswer(task.Context(), http.MethodPut, path, err)
	case again.status == http.StatusNotFound:
		return queue.TaskResultRetryFailure, fmt.Sprintf("contact %s already existed in the CRM (409 to POST) but was gone for the update (404 to PUT): it changed meanwhile; will retry", ch.externalID)
	}
	return a.classify(task, again, "contact "+ch.externalID+" already existed in the CRM (409): updated it instead")
}

// update PUTs the contact, falling back to a POST on the CRM's 404.
func (a *crmAction) update(task queue.Task, ch crmChange) (queue.TaskResult, string) {
	path := ch.path()
	ans, err := a.call(task.Context(), http.MethodPut, path, ch.body(false))
	if err != nil {
		return a.noAnswer(task.Context(), http.MethodPut, path, err)
	}
	if ans.status != http.StatusNotFound || ans.errorCode() != "not_found" {
		return a.classify(task, ans, "updated contact "+ch.externalID+" in the CRM")
	}
	again, err := a.call(task.Context(), http.MethodPost, "/v1/contacts", ch.body(true))
	switch {
	case err != nil:
		return a.noAnswer(task.Context(), http.MethodPost, "/v1/contacts", err)
	case again.status == http.StatusConflict:
		return queue.TaskResultRetryFailure, fmt.Sprintf("contact %s was missing from the CRM (404 to PUT) but existed for the create (409 to POST): it changed meanwhile; will retry", ch.externalID)
	}
	return a.classify(task, again, "contact "+ch.externalID+" was missing from the CRM (404): created it instead")
}

// remove DELETEs the contact; the CRM's 404 means it is already gone.
func (a *crmAction) remove(task queue.Task, ch crmChange) (queue.TaskResult, string) {
	path := ch.path()
	ans, err := a.call(task.Context(), http.MethodDelete, path, nil)
	if err != nil {
		return a.noAnswer(task.Context(), http.MethodDelete, path, err)
	}
	if ans.status == http.StatusNotFound && ans.errorCode() == "not_found" {
		return queue.TaskResultSuccess, fmt.Sprintf("contact %s was already gone from the CRM (404 to DELETE)", ch.externalID)
	}
	return a.classify(task, ans, "deleted contact "+ch.externalID+" from the CRM")
}

// call sends one request under the client timeout and reads the answer.
// body, when not nil, is sent as JSON.
func (a *crmAction) call(taskCtx context.Context, method, path string, body any) (crmAnswer, error) {
	ans := crmAnswer{method: method, path: path}
	var reader io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return ans, err
		}
		reader = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(taskCtx, a.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.base.String()+path, reader)
	if err != nil {
		return ans, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "esync-crmsync")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return ans, err
	}
	defer resp.Body.Close()
	ans.status, ans.header = resp.StatusCode, resp.Header
	// A body cut short still leaves the status to classify by.
	ans.body, _ = io.ReadAll(io.LimitReader(resp.Body, maxCRMAnswerBytes))
	return ans, nil
}

// classify turns an answer into a task result; done describes a success.
func (a *crmAction) classify(task queue.Task, ans crmAnswer, done string) (queue.TaskResult, string) {
	head := fmt.Sprintf("CRM answered %d %s to %s %s", ans.status, http.StatusText(ans.status), ans.method, ans.path)
	switch s := ans.status; {
	case s >= 200 && s < 300:
		msg := fmt.Sprintf("%s (%d)", done, s)
		var c Contact
		if json.Unmarshal(ans.body, &c) == nil && c.ID != "" {
			msg = fmt.Sprintf("%s (%d, CRM id %s)", done, s, c.ID)
		}
		return queue.TaskResultSuccess, msg
	case retryableStatus(s):
		msg := head + ": " + ans.errorText() + "; will retry"
		if d, ok := parseRetryAfter(ans.header, time.Now()); ok {
			queue.RetryAfter(task, d)
			msg += fmt.Sprintf(" no sooner than %s (Retry-After)", d)
		}
		return queue.TaskResultRetryFailure, msg
	case s >= 300 && s < 400:
		return queue.TaskResultPermanentFailure, fmt.Sprintf("%s, redirecting to %q: check the CRM URL", head, ans.header.Get("Location"))
	case s == http.StatusNotFound:
		return queue.TaskResultPermanentFailure, head + ": " + ans.errorText() + " (check the CRM URL)"
	default:
		return queue.TaskResultPermanentFailure, head + ": " + ans.errorText()
	}
}

// retryableStatus reports whether an answer with status s is worth
// retrying: 408, 409, 425, 429 and 5xx.
func retryableStatus(s int) bool {
	return s == http.StatusRequestTimeout || s == http.StatusConflict || s == http.StatusTooEarly ||
		s == http.StatusTooManyRequests || s >= 500
}

// noAnswer words a request sent under ctx that got no answer; every such
// case is worth retrying, and the CRM may or may not have applied it.
func (a *crmAction) noAnswer(ctx context.Context, method, path string, err error) (queue.TaskResult, string) {
	req := method + " " + path
	switch {
	case ctx.Err() != nil:
		return queue.TaskResultRetryFailure, fmt.Sprintf("no answer to %s: the run's deadline passed or it was cancelled (%v); will retry", req, ctx.Err())
	case errors.Is(err, context.DeadlineExceeded):
		return queue.TaskResultRetryFailure, fmt.Sprintf("no answer to %s: the CRM did not answer within %s; will retry", req, a.timeout)
	default:
		return queue.TaskResultRetryFailure, fmt.Sprintf("no answer to %s: %v; will retry", req, err)
	}
}

// redact removes the token from s.
func (a *crmAction) redact(s string) string {
	return strings.ReplaceAll(s, a.token, "[redacted]")
}

// String describes the action without its token.
func (a *crmAction) String() string {
	return fmt.Sprintf("crmAction{url: %s, timeout: %s, token: [redacted]}", a.base.Redacted(), a.timeout)
}

// Format prints the action as String does, whatever the verb, so the token
// cannot reach a log line through fmt.
func (a *crmAction) Format(f fmt.State, _ rune) { io.WriteString(f, a.String()) } //nolint:errcheck // as fmt does

// decodeCRMChange reads and checks a task's data; nothing is sent for a
// task it refuses.
func decodeCRMChange(task queue.Task) (crmChange, error) {
	var t cdcTask
	if err := task.Decode(&t); err != nil {
		return crmChange{}, fmt.Errorf("not a CDC task object: %v", err)
	}
	id, err := cdcIDText(t.ObjectID)
	switch {
	case err != nil:
		return crmChange{}, fmt.Errorf("object_id: %v", err)
	case id == "":
		return crmChange{}, errors.New("object_id is missing or empty")
	}
	ch := crmChange{externalID: id, action: t.Action}
	switch t.Action {
	case "create", "update":
		if t.Row == nil {
			return crmChange{}, fmt.Errorf("row is missing for %s of object %s", t.Action, id)
		}
		if len(t.Row.ID) > 0 {
			rowID, err := cdcIDText(t.Row.ID)
			if err != nil {
				return crmChange{}, fmt.Errorf("row id: %v", err)
			}
			if rowID != "" && rowID != id {
				return crmChange{}, fmt.Errorf("row id %s does not match object_id %s", rowID, id)
			}
		}
		ch.row = *t.Row
	case "delete":
	case "":
		return crmChange{}, fmt.Errorf("action is missing for object %s", id)
	default:
		return crmChange{}, fmt.Errorf("unknown action %q for object %s (want create, update or delete)", t.Action, id)
	}
	return ch, nil
}

// cdcIDText reads an id given as a JSON string or number; null or absent is "".
func cdcIDText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return strings.TrimSpace(s), nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String(), nil
	}
	return "", fmt.Errorf("%s is neither a string nor a number", crmOneLine(string(raw), 40))
}

// path is the CRM's address of the contact.
func (ch crmChange) path() string {
	return "/v1/contacts/" + url.PathEscape(ch.externalID)
}

// body is the contact as create (withID) or update sends it.
func (ch crmChange) body(withID bool) contactBody {
	b := contactBody{Name: derefString(ch.row.Name), Email: derefString(ch.row.Email), Tier: derefString(ch.row.Tier)}
	if withID {
		b.ExternalID = ch.externalID
	}
	return b
}

// errorCode is the code of the CRM's JSON error, or "".
func (ans crmAnswer) errorCode() string {
	var e crmError
	if json.Unmarshal(ans.body, &e) != nil {
		return ""
	}
	return e.Code
}

// errorText is the CRM's error message with its code, or the start of the
// body when it is not a JSON error.
func (ans crmAnswer) errorText() string {
	var e crmError
	if json.Unmarshal(ans.body, &e) == nil && e.Message != "" {
		return crmErrorText(e.Code, e.Message)
	}
	if text := crmOneLine(string(ans.body), 300); text != "" {
		return text
	}
	return "no error text"
}

// crmErrorText is the CRM's error message with its code, on one line.
func crmErrorText(code, message string) string {
	if code != "" {
		return crmOneLine(message, 300) + " [" + crmOneLine(code, 50) + "]"
	}
	return crmOneLine(message, 300)
}

// parseRetryAfter reads a Retry-After header, in seconds or as an HTTP date,
// capped at maxCRMRetryAfter.
func parseRetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
		return time.Duration(min(secs, int64(maxCRMRetryAfter/time.Second))) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return min(max(at.Sub(now), 0), maxCRMRetryAfter), true
	}
	return 0, false
}

// redactCRMURL hides a password in a URL that may not parse.
func redactCRMURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	if at := strings.LastIndex(raw, "@"); at >= 0 {
		return "[redacted]" + raw[at:]
	}
	return raw
}

// derefString returns *s, or "" for nil.
func derefString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// crmOneLine collapses s to a single line of at most n runes.
func crmOneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
