package email

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/esync/queue"
	"github.com/sendgrid/rest"
	sendgrid "github.com/sendgrid/sendgrid-go"
	"github.com/sendgrid/sendgrid-go/helpers/mail"
)

// TaskName is the task name Enqueue uses; register the Action under it.
const TaskName = "email"

// SendPath is the SendGrid v3 endpoint the action posts to.
const SendPath = "/v3/mail/send"

// maxAnswerBytes bounds how much of SendGrid's answer is read.
const maxAnswerBytes = 64 << 10

// Action sends the message in a task's data through SendGrid. It is a
// queue.TaskAction, safe for concurrent use.
//
// A 2xx answer makes the task DONE. 400, 401, 403 and 413 (and any other
// 4xx or a redirect) make it FAILED with SendGrid's error text: sending the
// same message again cannot succeed. 408, 429, 5xx, timeouts and network
// errors make it RETRY, no sooner than a Retry-After header asks. Task data
// that cannot be read or would be refused makes it FAILED before anything is
// sent. The API key never appears in a task message or error, and printing
// an Action with any fmt verb shows it redacted.
type Action struct {
	key     string
	host    string
	timeout time.Duration
	client  *http.Client
	bcc     *Address
	err     error // configuration problem, reported by Do
}

// EmailSendgridAction is the original name of Action.
type EmailSendgridAction = Action

// New returns an Action that sends with apiKey. It fails on an empty or
// malformed key or a bad option.
func New(apiKey string, opts ...Option) (*Action, error) {
	a := newAction(apiKey, opts)
	if a.err != nil {
		return nil, a.err
	}
	return a, nil
}

// NewEmailSendgridAction returns an Action in the original form: apiKey and
// an optional address blind-copied on every message (nil or empty for
// none), then any further options. A configuration problem is reported by
// every run as a permanent failure, since this form returns no error.
func NewEmailSendgridAction(apiKey string, bccEmail *string, opts ...Option) *Action {
	if bccEmail != nil && strings.TrimSpace(*bccEmail) != "" {
		opts = append([]Option{WithBCC(*bccEmail)}, opts...)
	}
	return newAction(apiKey, opts)
}

func newAction(apiKey string, opts []Option) *Action {
	s := settings{host: GlobalHost, timeout: DefaultTimeout}
	var errs []string
	for _, opt := range opts {
		if err := opt(&s); err != nil {
			errs = append(errs, err.Error())
		}
	}
	switch {
	case apiKey == "":
		errs = append(errs, "empty API key")
	case strings.ContainsAny(apiKey, " \t\r\n"):
		errs = append(errs, "API key contains spaces or line breaks")
	}
	a := &Action{key: apiKey, host: s.host, timeout: s.timeout, client: answerClient(s.client), bcc: s.bcc}
	if len(errs) > 0 {
		a.err = fmt.Errorf("email: %s", a.redact(strings.Join(errs, "; ")))
	}
	return a
}

// Do sends the task's message and classifies SendGrid's answer.
func (a *Action) Do(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
	res, msg := a.do(task)
	return res, queue.TaskMessage(a.redact(msg))
}

func (a *Action) do(task queue.Task) (queue.TaskResult, string) {
	if a.err != nil {
		return queue.TaskResultPermanentFailure, "not sent: action misconfigured: " + a.err.Error()
	}
	p, err := decodeTask(task)
	if err != nil {
		return queue.TaskResultPermanentFailure, "not sent: bad task data: " + err.Error()
	}
	if err := p.Validate(); err != nil {
		return queue.TaskResultPermanentFailure, "not sent: " + err.Error()
	}
	body, err := json.Marshal(a.message(p))
	if err != nil {
		return queue.TaskResultPermanentFailure, "not sent: cannot encode the message: " + err.Error()
	}

	if err := task.Context().Err(); err != nil {
		return queue.TaskResultRetryFailure, "not sent: the run ended before sending: " + err.Error()
	}
	ctx, cancel := context.WithTimeout(task.Context(), a.timeout)
	defer cancel()
	req := sendgrid.GetRequest(a.key, SendPath, a.host)
	req.Method = rest.Post
	req.Body = body
	resp, err := (&rest.Client{HTTPClient: a.client}).SendWithContext(ctx, req)
	if resp == nil {
		return queue.TaskResultRetryFailure, a.describeSendError(task.Context(), err)
	}
	return classify(task, resp, err)
}

// message builds SendGrid's request body: one personalization holding every
// recipient, text before HTML as SendGrid requires.
func (a *Action) message(p Payload) *mail.SGMailV3 {
	m := mail.NewV3Mail()
	m.SetFrom(mail.NewEmail(p.From.Name, p.From.Email))
	m.Subject = p.Subject
	per := mail.NewPersonalization()
	recipients := map[string]bool{}
	for _, list := range []struct {
		addrs []Address
		add   func(...*mail.Email)
	}{{p.To, per.AddTos}, {p.CC, per.AddCCs}, {p.BCC, per.AddBCCs}} {
		for _, r := range list.addrs {
			list.add(mail.NewEmail(r.Name, r.Email))
			recipients[strings.ToLower(r.Email)] = true
		}
	}
	if a.bcc != nil && !recipients[strings.ToLower(a.bcc.Email)] {
		per.AddBCCs(mail.NewEmail(a.bcc.Name, a.bcc.Email))
	}
	if p.TemplateID != "" {
		m.SetTemplateID(p.TemplateID)
		for k, v := range p.TemplateData {
			per.SetDynamicTemplateData(k, v)
		}
	}
	m.AddPersonalizations(per)
	if p.Text != "" {
		m.AddContent(mail.NewContent("text/plain", p.Text))
	}
	if p.HTML != "" {
		m.AddContent(mail.NewContent("text/html", p.HTML))
	}
	if p.ReplyTo != nil {
		m.SetReplyTo(mail.NewEmail(p.ReplyTo.Name, p.ReplyTo.Email))
	}
	for _, att := range p.Attachments {
		m.AddAttachment(&mail.Attachment{
			Content:     att.Content,
			Filename:    att.Filename,
			Type:        att.Type,
			Disposition: att.Disposition,
			ContentID:   att.ContentID,
		})
	}
	return m
}

// describeSendError words a send that got no answer; every such case is
// worth retrying.
func (a *Action) describeSendError(taskCtx context.Context, err error) string {
	switch {
	case taskCtx.Err() != nil:
		return "not confirmed: the run's deadline passed or it was cancelled while sending (" + taskCtx.Err().Error() + ")"
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("not confirmed: SendGrid did not answer within %s", a.timeout)
	default:
		return "not sent: network error: " + errorText(err)
	}
}

// redact removes the API key from s.
func (a *Action) redact(s string) string {
	if a.key == "" {
		return s
	}
	return strings.ReplaceAll(s, a.key, "[redacted]")
}

// String describes the action without its API key.
func (a Action) String() string {
	return fmt.Sprintf("email.Action{host: %s, timeout: %s, key: [redacted]}", a.host, a.timeout)
}

// Format prints the action as String does, whatever the verb, so the API
// key cannot reach a log line through fmt.
func (a Action) Format(f fmt.State, verb rune) { io.WriteString(f, a.String()) }

// answerClient returns a copy of c (or of a default client) that does not
// follow redirects and reads at most maxAnswerBytes of an answer.
func answerClient(c *http.Client) *http.Client {
	cp := http.Client{}
	if c != nil {
		cp = *c
	}
	next := cp.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	cp.Transport = limitedTransport{next}
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}

type limitedTransport struct{ next http.RoundTripper }

func (t limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err == nil {
		resp.Body = limitedBody{io.LimitReader(resp.Body, maxAnswerBytes), resp.Body}
	}
	return resp, err
}

type limitedBody struct {
	io.Reader
	io.Closer
}

func errorText(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}
