package email_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/actions/email"
)

// taskOf builds a task as the queue hands it to an action. data may be raw
// JSON ([]byte) or any value to encode.
func taskOf(t *testing.T, data any) queue.Task {
	t.Helper()
	raw, ok := data.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(data); err != nil {
			t.Fatal(err)
		}
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m) // stays nil for data that is not an object
	return queue.WithRetryNotes(queue.Task{ID: 7, Key: "mail:7", Name: email.TaskName, Attempt: 1, RawData: raw, Data: m})
}

func actionFor(t *testing.T, f *fakeSendGrid, opts ...email.Option) *email.Action {
	t.Helper()
	a, err := email.New(testKey, append([]email.Option{email.WithHost(f.srv.URL)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func simplePayload() email.Payload {
	return email.Payload{
		From:    email.Address{Email: "shop@example.com", Name: "Shop"},
		To:      []email.Address{{Email: "ann@example.net", Name: "Ann"}},
		Subject: "Your order",
		Text:    "It ships today.",
	}
}

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

// 2xx → DONE, and the request carries every part of the payload.
func TestAcceptedIsDone(t *testing.T) {
	f := newFakeSendGrid(t, nil)
	p := email.Payload{
		From:    email.Address{Email: "shop@example.com", Name: "Shop"},
		To:      []email.Address{{Email: "ann@example.net", Name: "Ann"}, {Email: "bob@example.net"}},
		CC:      []email.Address{{Email: "carl@example.net"}},
		BCC:     []email.Address{{Email: "audit@example.com"}},
		ReplyTo: &email.Address{Email: "help@example.com", Name: "Help"},
		Subject: "Your order",
		Text:    "It ships today.",
		HTML:    "<p>It ships today.</p><img src=\"cid:logo\">",
		Attachments: []email.Attachment{
			{Content: "JVBERi0xLjQK", Filename: "invoice.pdf", Type: "application/pdf"},
			{Content: "iVBORw0KGgo=", Filename: "logo.png", Type: "image/png", Disposition: "inline", ContentID: "logo"},
		},
	}
	res, msg := actionFor(t, f).Do(taskOf(t, p))
	expect(t, res, msg, queue.TaskResultSuccess, "202", "msg-4711")

	got, hdr := f.Only(t)
	if hdr.Get("Authorization") != "Bearer "+testKey {
		t.Errorf("Authorization %q", hdr.Get("Authorization"))
	}
	want := sgRequest{
		From:    &sgEmail{Email: "shop@example.com", Name: "Shop"},
		ReplyTo: &sgEmail{Email: "help@example.com", Name: "Help"},
		Subject: "Your order",
		Personalizations: []sgPersonalization{{
			To:  []sgEmail{{Email: "ann@example.net", Name: "Ann"}, {Email: "bob@example.net"}},
			CC:  []sgEmail{{Email: "carl@example.net"}},
			BCC: []sgEmail{{Email: "audit@example.com"}},
		}},
		Content: []sgContent{{"text/plain", "It ships today."}, {"text/html", "<p>It ships today.</p><img src=\"cid:logo\">"}},
		Attachments: []sgAttachment{
			{Content: "JVBERi0xLjQK", Filename: "invoice.pdf", Type: "application/pdf"},
			{Content: "iVBORw0KGgo=", Filename: "logo.png", Type: "image/png", Disposition: "inline", ContentID: "logo"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SendGrid got\n%+v\nwant\n%+v", got, want)
	}
}

// A dynamic template needs neither subject nor content.
func TestTemplateIsDone(t *testing.T) {
	f := newFakeSendGrid(t, nil)
	p := email.Payload{
		From:         email.Address{Email: "shop@example.com"},
		To:           []email.Address{{Email: "ann@example.net"}},
		TemplateID:   "d-0123456789abcdef",
		TemplateData: map[string]any{"name": "Ann", "items": []any{"tea", "cups"}, "total": 12.5},
	}
	res, msg := actionFor(t, f).Do(taskOf(t, p))
	expect(t, res, msg, queue.TaskResultSuccess)
	got, _ := f.Only(t)
	if got.TemplateID != "d-0123456789abcdef" || len(got.Content) != 0 || got.Subject != "" {
		t.Errorf("template request %+v", got)
	}
	wantData := map[string]any{"name": "Ann", "items": []any{"tea", "cups"}, "total": 12.5}
	if !reflect.DeepEqual(got.Personalizations[0].DynamicTemplateData, wantData) {
		t.Errorf("dynamic_template_data %v, want %v", got.Personalizations[0].DynamicTemplateData, wantData)
	}
}

// Numbers in template data reach SendGrid exactly as queued.
func TestTemplateDataNumbersExact(t *testing.T) {
	var seen []byte
	f := newFakeSendGrid(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(seen))
		f.serve(w, r)
	})
	data := []byte(`{"from":{"email":"a@example.com"},"to":[{"email":"b@example.com"}],"template_id":"d-1","template_data":{"order":12345678901234567890,"price":0.1}}`)
	res, msg := actionFor(t, f).Do(taskOf(t, data))
	expect(t, res, msg, queue.TaskResultSuccess)
	if !bytes.Contains(seen, []byte(`"order":12345678901234567890`)) || !bytes.Contains(seen, []byte(`"price":0.1`)) {
		t.Errorf("template data changed on the way: %s", seen)
	}
}

// Tasks queued by the original esync are still sent.
func TestOriginalShapeIsSent(t *testing.T) {
	f := newFakeSendGrid(t, nil)
	data := []byte(`{
		"from_email": "shop@example.com", "from_name": "Shop",
		"to_email": "ann@example.net", "to_name": "Ann",
		"cc_emails": [{"name": "Carl", "email": " carl@example.net "}],
		"reply_to_email": "help@example.com", "reply_to_name": "Help",
		"subject": "Your order", "text_body": "plain", "html_body": "<b>html</b>",
		"attachments": [{"Data": "JVBERi0xLjQK", "Filename": "invoice.pdf", "Type": "application/pdf"}]
	}`)
	res, msg := actionFor(t, f).Do(taskOf(t, data))
	expect(t, res, msg, queue.TaskResultSuccess)
	got, _ := f.Only(t)
	want := sgRequest{
		From:             &sgEmail{Email: "shop@example.com", Name: "Shop"},
		ReplyTo:          &sgEmail{Email: "help@example.com", Name: "Help"},
		Subject:          "Your order",
		Personalizations: []sgPersonalization{{To: []sgEmail{{Email: "ann@example.net", Name: "Ann"}}, CC: []sgEmail{{Email: "carl@example.net", Name: "Carl"}}}},
		Content:          []sgContent{{"text/plain", "plain"}, {"text/html", "<b>html</b>"}},
		Attachments:      []sgAttachment{{Content: "JVBERi0xLjQK", Filename: "invoice.pdf", Type: "application/pdf"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SendGrid got\n%+v\nwant\n%+v", got, want)
	}
}

// The original constructor's bcc copies every message, once.
func TestSeedConstructorBCC(t *testing.T) {
	bcc := "audit@example.com"
	for name, c := range map[string]struct {
		p    email.Payload
		want []sgEmail
	}{
		"added": {simplePayload(), []sgEmail{{Email: "audit@example.com"}}},
		"already in to": {func() email.Payload {
			p := simplePayload()
			p.To = append(p.To, email.Address{Email: "Audit@example.com"})
			return p
		}(), nil},
		"already in bcc": {func() email.Payload {
			p := simplePayload()
			p.BCC = []email.Address{{Email: "audit@example.com"}}
			return p
		}(), []sgEmail{{Email: "audit@example.com"}}},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeSendGrid(t, nil)
			a := email.NewEmailSendgridAction(testKey, &bcc, email.WithHost(f.srv.URL))
			res, msg := a.Do(taskOf(t, c.p))
			expect(t, res, msg, queue.TaskResultSuccess)
			got, _ := f.Only(t)
			if !reflect.DeepEqual(got.Personalizations[0].BCC, c.want) {
				t.Errorf("bcc %v, want %v", got.Personalizations[0].BCC, c.want)
			}
		})
	}
}

// Answers SendGrid gives to a request that can never succeed → FAILED with
// SendGrid's error text.
func TestRefusalsAreFailed(t *testing.T) {
	for _, c := range []struct {
		name   string
		status int
		errs   []sgError
		want   []string
	}{
		{"400", http.StatusBadRequest, []sgError{
			{Message: "The template_id must be a valid GUID.", Field: field("template_id")},
			{Message: "Invalid type. Expected: string, given: integer.", Field: field("personalizations.0.subject")},
		}, []string{"400 Bad Request", "The template_id must be a valid GUID. (field template_id)", "Invalid type. Expected: string, given: integer. (field personalizations.0.subject)"}},
		{"403", http.StatusForbidden, []sgError{
			{Message: "The from address does not match a verified Sender Identity. Mail cannot be sent until this error is resolved.", Field: field("from")},
		}, []string{"403 Forbidden", "does not match a verified Sender Identity", "(field from)"}},
		{"413", http.StatusRequestEntityTooLarge, []sgError{{Message: "The JSON payload you have included in your request is too large."}},
			[]string{"413 Request Entity Too Large", "payload you have included in your request is too large"}},
		{"404 (other 4xx)", http.StatusNotFound, []sgError{{Message: "resource not found"}}, []string{"404 Not Found", "resource not found"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeSendGrid(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "5") // not a reason to retry a refusal
				writeErrors(w, c.status, c.errs...)
			})
			task := taskOf(t, simplePayload())
			res, msg := actionFor(t, f).Do(task)
			expect(t, res, msg, queue.TaskResultPermanentFailure, c.want...)
			if _, asked := queue.RequestedRetryDelay(task); asked {
				t.Error("retry delay asked on a permanent failure")
			}
		})
	}
}

// 401: the fake refuses a key it does not know, as SendGrid does.
func TestWrongKeyIsFailed(t *testing.T) {
	f := newFakeSendGrid(t, nil)
	a, err := email.New("SG.some-other-key", email.WithHost(f.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	res, msg := a.Do(taskOf(t, simplePayload()))
	expect(t, res, msg, queue.TaskResultPermanentFailure, "401 Unauthorized", "authorization grant is invalid")
}

// A redirect is not followed (it would turn the POST into a GET).
func TestRedirectIsFailed(t *testing.T) {
	f := newFakeSendGrid(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://elsewhere.example/v3/mail/send", http.StatusFound)
	})
	res, msg := actionFor(t, f).Do(taskOf(t, simplePayload()))
	expect(t, res, msg, queue.TaskResultPermanentFailure, "302", "elsewhere.example", "host setting")
	if f.Hits() != 1 {
		t.Errorf("%d requests", f.Hits())
	}
}

// 429 and 5xx → RETRY, no sooner than the server asks.
func TestTransientAnswersAreRetried(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name          string
		status        int
		header        map[string]string
		minWait, wait time.Duration // wanted delay range; 0, 0: none asked
		want          string
	}{
		{"429 Retry-After seconds", 429, map[string]string{"Retry-After": "30"}, 30 * time.Second, 30 * time.Second, "429 Too Many Requests"},
		{"429 Retry-After date", 429, map[string]string{"Retry-After": now.Add(2 * time.Minute).UTC().Format(http.TimeFormat)}, time.Minute, 2 * time.Minute, "429"},
		{"429 X-RateLimit-Reset", 429, map[string]string{"X-RateLimit-Reset": strconv.FormatInt(now.Add(90*time.Second).Unix(), 10)}, 30 * time.Second, 91 * time.Second, "429"},
		{"429 huge Retry-After is capped", 429, map[string]string{"Retry-After": "999999999"}, 24 * time.Hour, 24 * time.Hour, "429"},
		{"500", 500, nil, 0, 0, "500 Internal Server Error"},
		{"503 Retry-After", 503, map[string]string{"Retry-After": "120"}, 2 * time.Minute, 2 * time.Minute, "503 Service Unavailable"},
		{"408", 408, nil, 0, 0, "408 Request Timeout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeSendGrid(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range c.header {
					w.Header().Set(k, v)
				}
				writeErrors(w, c.status, sgError{Message: "try again later"})
			})
			task := taskOf(t, simplePayload())
			res, msg := actionFor(t, f).Do(task)
			expect(t, res, msg, queue.TaskResultRetryFailure, c.want, "try again later")
			d, asked := queue.RequestedRetryDelay(task)
			if c.wait == 0 {
				if asked {
					t.Errorf("asked for a delay of %s without a header", d)
				}
				return
			}
			if !asked || d < c.minWait || d > c.wait {
				t.Errorf("requested delay %s (asked %v), want between %s and %s", d, asked, c.minWait, c.wait)
			}
		})
	}
}

// hangingFake never answers until the client gives up.
func hangingFake(t *testing.T) *fakeSendGrid {
	release := make(chan struct{})
	f := newFakeSendGrid(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server closes
	return f
}

// A server that does not answer within the configured timeout → RETRY.
func TestTimeoutIsRetried(t *testing.T) {
	f := hangingFake(t)
	res, msg := actionFor(t, f, email.WithTimeout(50*time.Millisecond)).Do(taskOf(t, simplePayload()))
	expect(t, res, msg, queue.TaskResultRetryFailure, "did not answer within 50ms")
}

// The task's own deadline bounds the send too → RETRY.
func TestTaskDeadlineIsRetried(t *testing.T) {
	f := hangingFake(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	res, msg := actionFor(t, f).Do(taskOf(t, simplePayload()).WithContext(ctx))
	expect(t, res, msg, queue.TaskResultRetryFailure, "deadline", "context deadline exceeded")
}

// A run already cancelled sends nothing → RETRY.
func TestCancelledRunSendsNothing(t *testing.T) {
	f := newFakeSendGrid(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, msg := actionFor(t, f).Do(taskOf(t, simplePayload()).WithContext(ctx))
	expect(t, res, msg, queue.TaskResultRetryFailure, "not sent", "context canceled")
	if f.Hits() != 0 {
		t.Errorf("%d requests sent for a cancelled run", f.Hits())
	}
}

// closedPortURL returns the URL of a loopback port nobody listens on.
func closedPortURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// A network error → RETRY.
func TestNetworkErrorIsRetried(t *testing.T) {
	a, err := email.New(testKey, email.WithHost(closedPortURL(t)))
	if err != nil {
		t.Fatal(err)
	}
	res, msg := a.Do(taskOf(t, simplePayload()))
	expect(t, res, msg, queue.TaskResultRetryFailure, "network error", "connection refused")
}

// A long error answer is cut to a readable line.
func TestLongAnswerIsCut(t *testing.T) {
	f := newFakeSendGrid(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(strings.Repeat("oops\n", 200000)))
	})
	res, msg := actionFor(t, f).Do(taskOf(t, simplePayload()))
	expect(t, res, msg, queue.TaskResultPermanentFailure, "400", "oops oops")
	if len(msg) > 600 || strings.Contains(string(msg), "\n") {
		t.Errorf("message is %d bytes or has line breaks", len(msg))
	}
}

// Task data that cannot be sent → FAILED with a clear message, and nothing
// reaches SendGrid.
func TestBadTaskDataIsFailedUnsent(t *testing.T) {
	for _, c := range []struct {
		name string
		data string
		want string
	}{
		{"not JSON", `{"from":`, "not valid JSON"},
		{"empty", ``, "no data"},
		{"array", `[1,2]`, "not an object"},
		{"to is a string", `{"from":{"email":"a@example.com"},"to":"b@example.com","subject":"s","text":"t"}`, `field "to" is a JSON string, want an array`},
		{"subject is a number", `{"from":{"email":"a@example.com"},"to":[{"email":"b@example.com"}],"subject":5,"text":"t"}`, `field "subject" is a JSON number, want a string`},
		{"misspelt field", `{"from":{"email":"a@example.com"},"to":[{"email":"b@example.com"}],"subject":"s","text":"t","bbc":[{"email":"c@example.com"}]}`, `unknown field "bbc"`},
		{"no from", `{"to":[{"email":"b@example.com"}],"subject":"s","text":"t"}`, "from: an address is required"},
		{"no recipient", `{"from":{"email":"a@example.com"},"subject":"s","text":"t"}`, "to: at least one recipient is required"},
		{"no subject", `{"from":{"email":"a@example.com"},"to":[{"email":"b@example.com"}],"text":"t"}`, "subject: required"},
		{"no content", `{"from":{"email":"a@example.com"},"to":[{"email":"b@example.com"}],"subject":"s"}`, "text or html is required"},
		{"bad address", `{"from":{"email":"a@example.com"},"to":[{"email":"not an address"}],"subject":"s","text":"t"}`, `to[0]: "not an address" is not a valid address`},
		{"bad base64", `{"from":{"email":"a@example.com"},"to":[{"email":"b@example.com"}],"subject":"s","text":"t","attachments":[{"content":"%%%","filename":"a.txt"}]}`, "attachments[0]: content is not valid base64"},
		{"original shape, wrong type", `{"from_email":"a@example.com","to_email":["b@example.com"],"subject":"s","text_body":"t"}`, `original email shape`},
		{"original shape, no to", `{"from_email":"a@example.com","subject":"s","text_body":"t"}`, "to: at least one recipient is required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeSendGrid(t, nil)
			res, msg := actionFor(t, f).Do(taskOf(t, []byte(c.data)))
			expect(t, res, msg, queue.TaskResultPermanentFailure, "not sent", c.want)
			if f.Hits() != 0 {
				t.Errorf("%d requests sent for bad data", f.Hits())
			}
		})
	}
}

// Data given only as the decoded map (no RawData) is read too.
func TestDataMapWithoutRawData(t *testing.T) {
	f := newFakeSendGrid(t, nil)
	task := taskOf(t, simplePayload())
	task.RawData = nil
	res, msg := actionFor(t, f).Do(task)
	expect(t, res, msg, queue.TaskResultSuccess)
	got, _ := f.Only(t)
	if got.Subject != "Your order" {
		t.Errorf("subject %q", got.Subject)
	}
}

func TestNewRejectsBadConfiguration(t *testing.T) {
	for name, c := range map[string]struct {
		key  string
		opts []email.Option
		want string
	}{
		"empty key":        {"", nil, "empty API key"},
		"key with newline": {"SG.abc\r\nX-Evil: 1", nil, "line breaks"},
		"host with path":   {testKey, []email.Option{email.WithHost("https://api.sendgrid.com/v3")}, "scheme and host only"},
		"host not http":    {testKey, []email.Option{email.WithHost("ftp://api.sendgrid.com")}, "scheme and host only"},
		"zero timeout":     {testKey, []email.Option{email.WithTimeout(0)}, "not positive"},
		"nil client":       {testKey, []email.Option{email.WithHTTPClient(nil)}, "nil HTTP client"},
		"bad bcc":          {testKey, []email.Option{email.WithBCC("Audit <audit@example.com>")}, "bcc"},
	} {
		_, err := email.New(c.key, c.opts...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, c.want)
		}
	}
	for _, host := range []string{email.GlobalHost, email.EUHost, "http://127.0.0.1:8080/"} {
		if _, err := email.New(testKey, email.WithHost(host)); err != nil {
			t.Errorf("host %s: %v", host, err)
		}
	}
}

// The original constructor returns no error, so a bad setting fails each
// run instead, and nothing is sent.
func TestSeedConstructorMisconfigured(t *testing.T) {
	f := newFakeSendGrid(t, nil)
	bad := "not-an-address"
	a := email.NewEmailSendgridAction(testKey, &bad, email.WithHost(f.srv.URL))
	res, msg := a.Do(taskOf(t, simplePayload()))
	expect(t, res, msg, queue.TaskResultPermanentFailure, "misconfigured", "bcc")
	if f.Hits() != 0 {
		t.Errorf("%d requests sent", f.Hits())
	}
}

// WithHTTPClient's client is used, and still does not follow redirects.
func TestCustomHTTPClient(t *testing.T) {
	f := newFakeSendGrid(t, nil)
	used := false
	c := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		used = true
		return http.DefaultTransport.RoundTrip(r)
	})}
	res, msg := actionFor(t, f, email.WithHTTPClient(c)).Do(taskOf(t, simplePayload()))
	expect(t, res, msg, queue.TaskResultSuccess)
	if !used {
		t.Error("the given client was not used")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
