// Command email queues email and sends it through SendGrid's v3 API with
// esync's email action. It starts a SendGrid stand-in on loopback, queues a
// plain-text message, an HTML one, one from a dynamic template and one with
// an attachment, shows that a message with an invalid address is refused
// when it is queued, then runs a SyncManager until every message is sent.
// SendGrid answers 429 to one of them once; the action honours its
// Retry-After and the retry delivers it.
//
//	go run ./examples/email
//
// With DATABASE_URL set it works in a database of its own that it creates on
// that server (or, when the role may not create databases, a schema of its
// own in that database), dropped at the end unless --keep; without it, on a
// throwaway PostgreSQL. It never reads or writes the user's tables.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/actions/email"
	"github.com/esync/queue/examples/internal/exampledb"
)

// config sets up one run of the example.
type config struct {
	apiKey     string        // the key the action sends and the server expects; empty means random
	retryAfter time.Duration // the Retry-After of the one 429 answer (whole seconds)
	timeout    time.Duration // give up when the queue is not done by then
	out        io.Writer     // where the report goes; nil means os.Stdout
	keep       bool          // keep the example's database (or schema) at the end
}

func main() {
	cfg := config{}
	flag.DurationVar(&cfg.retryAfter, "retry-after", time.Second, "Retry-After of the one 429 answer")
	flag.DurationVar(&cfg.timeout, "timeout", time.Minute, "give up when the queue is not done by then")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the example's database (or schema) at the end")
	flag.Parse()
	ctx := exampledb.SignalContext()
	exampledb.Exit(ctx, run(ctx, cfg))
}

// throttled is the recipient whose first send is answered 429.
const throttled = "bob@example.net"

// outbox is one message the program queues: its task key and payload.
type outbox struct {
	key string
	p   email.Payload
}

// invoice is the attachment's content, checked byte for byte on arrival.
var invoice = []byte("item,qty,price\nesync support,1,99.00\n")

func messages() []outbox {
	shop := email.Address{Email: "shop@example.com", Name: "Example Shop"}
	return []outbox{
		{"welcome:ann", email.Payload{
			From: shop, To: []email.Address{{Email: "ann@example.net", Name: "Ann"}},
			Subject: "Welcome", Text: "Hello Ann, thanks for signing up.",
		}},
		{"receipt:1041", email.Payload{
			From: shop, To: []email.Address{{Email: throttled, Name: "Bob"}},
			Subject: "Your receipt", Text: "Order 1041: 2 items, 30.00 EUR.",
			HTML: "<p>Order <b>1041</b>: 2 items, 30.00 EUR.</p>",
		}},
		{"reset:carol", email.Payload{
			From: shop, To: []email.Address{{Email: "carol@example.net"}},
			TemplateID:   "d-8f2c1a0b7e6d4c3b9a1f0e2d3c4b5a69",
			TemplateData: map[string]any{"name": "Carol", "reset_url": "https://shop.example.com/reset/7f3a", "expires_in_minutes": 30},
		}},
		{"invoice:1042", email.Payload{
			From: shop, To: []email.Address{{Email: "dave@example.net"}}, CC: []email.Address{{Email: "accounts@example.net"}},
			Subject: "Invoice 1042", Text: "Your invoice is attached.",
			Attachments: []email.Attachment{{Filename: "invoice-1042.csv", Type: "text/csv", Content: base64.StdEncoding.EncodeToString(invoice)}},
		}},
	}
}

func run(ctx context.Context, cfg config) (err error) {
	out := cfg.out
	if out == nil {
		out = os.Stdout
	}
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	if cfg.timeout <= 0 {
		cfg.timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	key := cfg.apiKey
	if key == "" {
		b := make([]byte, 16)
		rand.Read(b)
		key = "SG." + hex.EncodeToString(b)
	}

	sendgrid := StartSendGrid(key)
	defer sendgrid.Close()
	sendgrid.ThrottleOnce(throttled, cfg.retryAfter)

	// A database (or schema) of its own; see package exampledb.
	place, err := exampledb.Open(ctx, "email", cfg.keep, nil)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, place.Close()) }()
	driver, err := place.OpenDriver(ctx)
	if err != nil {
		return err
	}
	tm := queue.NewTaskManager(driver)

	// Queue the messages. Enqueue checks each one before adding its task.
	mails := messages()
	for _, m := range mails {
		id, err := email.Enqueue(ctx, tm, m.key, m.p)
		if err != nil {
			return fmt.Errorf("enqueue %s: %w", m.key, err)
		}
		say("queued task %d %-13s to %s", id, m.key, m.p.To[0].Email)
	}

	// A message with an invalid address is refused and nothing is queued.
	const badKey = "welcome:erin"
	_, err = email.Enqueue(ctx, tm, badKey, email.Payload{
		From: email.Address{Email: "shop@example.com"}, To: []email.Address{{Email: "erin at example.net"}},
		Subject: "Welcome", Text: "Hello Erin",
	})
	if !errors.Is(err, email.ErrInvalidPayload) {
		return fmt.Errorf("enqueue with an invalid address: got %v, want an error wrapping email.ErrInvalidPayload", err)
	}
	say("refused %s: %v", badKey, err)
	if n, err := tm.Count(ctx, queue.TaskFilter{Key: email.Key(badKey)}); err != nil || n != 0 {
		return fmt.Errorf("refused payload: %d tasks with key %s (err %v), want none", n, badKey, err)
	}

	// Send: the action posts to the loopback server; a retry waits for
	// Retry-After when SendGrid gives one, else the short backoff.
	act, err := email.New(key, email.WithHost(sendgrid.URL()), email.WithTimeout(5*time.Second))
	if err != nil {
		return err
	}
	say("sending with %v", act) // prints the key redacted
	sm := queue.NewSyncManager(driver,
		queue.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	if err := sm.RegisterTaskHandler(act, email.TaskName,
		queue.WithRetryPolicy(queue.ConstantBackoff(200*time.Millisecond)),
		queue.WithTaskMaxAttempts(5)); err != nil {
		return err
	}
	start := time.Now()
	if err := sm.RunUntilDone(ctx); err != nil {
		return err
	}
	say("queue done in %s", time.Since(start).Round(time.Millisecond))

	for _, m := range sendgrid.Delivered() {
		say("delivered %s to %s: %s", m.ID, strings.Join(m.To, ", "), describe(m))
	}
	say("SendGrid's answers:")
	for _, x := range sendgrid.Exchanges() {
		note := ""
		if x.Status == http.StatusTooManyRequests {
			note = fmt.Sprintf(" (Retry-After %s: the task waits, then retries)", cfg.retryAfter)
		}
		say("  +%-7s %d %s to %s%s", x.At.Sub(start).Round(time.Millisecond), x.Status, http.StatusText(x.Status), x.To, note)
	}
	tasks, err := tm.List(ctx, queue.TaskFilter{Name: email.TaskName})
	if err != nil {
		return err
	}
	say("final task states:")
	for _, t := range tasks {
		say("  task %d %-13s %-5s attempts %d: %s", t.ID, t.Key, t.State, t.Attempt, t.Message)
	}
	return verify(mails, tasks, sendgrid, key, cfg.retryAfter)
}

// describe summarises what a delivered message carried.
func describe(m Message) string {
	var parts []string
	if m.Subject != "" {
		parts = append(parts, fmt.Sprintf("%q", m.Subject))
	}
	if m.TemplateID != "" {
		parts = append(parts, fmt.Sprintf("template %s with %d values", m.TemplateID, len(m.TemplateData)))
	}
	if m.Text != "" {
		parts = append(parts, "text")
	}
	if m.HTML != "" {
		parts = append(parts, "html")
	}
	for _, f := range m.Attachments {
		parts = append(parts, fmt.Sprintf("attachment %s (%d bytes)", f.Filename, len(f.Content)))
	}
	if len(m.CC) > 0 {
		parts = append(parts, "cc "+strings.Join(m.CC, ", "))
	}
	return strings.Join(parts, ", ")
}

// verify checks the outcome: every queued message delivered exactly once and
// as queued, the throttled one tried twice, only the valid messages queued,
// every task DONE, and the API key in no task message.
func verify(mails []outbox, tasks []queue.Task, sendgrid *SendGridServer, key string, retryAfter time.Duration) error {
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	byKey := map[string]queue.Task{}
	for _, t := range tasks {
		byKey[t.Key] = t
		if t.State != queue.TaskDone {
			fail("task %d %s ended %s: %s", t.ID, t.Key, t.State, t.Message)
		}
		if strings.Contains(t.Message, key) {
			fail("task %d's message holds the API key", t.ID)
		}
	}
	if len(tasks) != len(mails) {
		fail("%d email tasks in the queue, want %d (the refused one must not be queued)", len(tasks), len(mails))
	}
	delivered := map[string][]Message{}
	for _, m := range sendgrid.Delivered() {
		delivered[m.To[0]] = append(delivered[m.To[0]], m)
	}
	for _, m := range mails {
		to := m.p.To[0].Email
		got := delivered[to]
		if len(got) != 1 {
			fail("%s delivered %d times, want once", m.key, len(got))
			continue
		}
		if err := matches(got[0], m.p); err != nil {
			fail("%s arrived changed: %v", m.key, err)
		}
		wantAttempts := 1
		if to == throttled {
			wantAttempts = 2
		}
		if n := sendgrid.Attempts(to); n != wantAttempts {
			fail("%s reached SendGrid %d times, want %d", m.key, n, wantAttempts)
		}
		if t := byKey[email.Key(m.key)]; t.Attempt != wantAttempts {
			fail("task %s ran %d times, want %d", m.key, t.Attempt, wantAttempts)
		}
	}
	if len(delivered) != len(mails) {
		fail("SendGrid got messages for %d recipients, want %d", len(delivered), len(mails))
	}
	if n := sendgrid.Throttled(); n != 1 {
		fail("SendGrid answered 429 %d times, want once", n)
	}
	var throttledAt []time.Time
	for _, x := range sendgrid.Exchanges() {
		if x.To == throttled {
			throttledAt = append(throttledAt, x.At)
		}
	}
	if len(throttledAt) == 2 && throttledAt[1].Sub(throttledAt[0]) < retryAfter.Truncate(time.Second) {
		fail("%s was retried after %s, sooner than Retry-After %s", throttled, throttledAt[1].Sub(throttledAt[0]), retryAfter)
	}
	if len(problems) > 0 {
		return errors.New("email example: " + strings.Join(problems, "; "))
	}
	return nil
}

// matches reports how a delivered message differs from the queued payload.
func matches(m Message, p email.Payload) error {
	switch {
	case m.From != p.From.Email:
		return fmt.Errorf("from %s", m.From)
	case m.Subject != p.Subject || m.Text != p.Text || m.HTML != p.HTML:
		return fmt.Errorf("subject or content differ")
	case m.TemplateID != p.TemplateID:
		return fmt.Errorf("template %q", m.TemplateID)
	case len(m.CC) != len(p.CC):
		return fmt.Errorf("cc %v", m.CC)
	case len(m.Attachments) != len(p.Attachments):
		return fmt.Errorf("%d attachments", len(m.Attachments))
	}
	for k, v := range p.TemplateData {
		if fmt.Sprint(m.TemplateData[k]) != fmt.Sprint(v) {
			return fmt.Errorf("template value %s = %v, want %v", k, m.TemplateData[k], v)
		}
	}
	if len(m.TemplateData) != len(p.TemplateData) {
		return fmt.Errorf("%d template values, want %d", len(m.TemplateData), len(p.TemplateData))
	}
	for i, a := range p.Attachments {
		want, _ := base64.StdEncoding.DecodeString(a.Content)
		if f := m.Attachments[i]; f.Filename != a.Filename || f.Type != a.Type || !bytes.Equal(f.Content, want) {
			return fmt.Errorf("attachment %s differs", f.Filename)
		}
	}
	return nil
}
