package email_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/actions/email"
)

// canaryKey is recognisable anywhere it might leak.
const canaryKey = "SG.CANARY-d0-not-leak.Zm9vYmFy"

// TestAPIKeyNeverLeaks runs every answer path with a server that echoes
// the Authorization header back wherever it can, and checks that the key
// is in no task message, error, printed form or log line.
func TestAPIKeyNeverLeaks(t *testing.T) {
	var logs bytes.Buffer
	defer log.SetOutput(log.Writer())
	log.SetOutput(&logs)

	echo := func(status int, header string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			auth := r.Header.Get("Authorization")
			if header != "" {
				w.Header().Set(header, auth)
			}
			w.Header().Set("Location", "https://elsewhere.example/?k="+auth)
			writeErrors(w, status, sgError{Message: "you sent " + auth, Field: field(auth)})
		}
	}
	type path struct {
		name   string
		answer http.HandlerFunc
		data   any
		opts   []email.Option
		ctx    context.Context
		want   queue.TaskResult
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	keyInData := simplePayload()
	keyInData.To = []email.Address{{Email: canaryKey}}
	paths := []path{
		{name: "202", answer: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Message-Id", r.Header.Get("Authorization"))
			w.WriteHeader(http.StatusAccepted)
		}, want: queue.TaskResultSuccess},
		{name: "302", answer: echo(http.StatusFound, ""), want: queue.TaskResultPermanentFailure},
		{name: "400", answer: echo(400, ""), want: queue.TaskResultPermanentFailure},
		{name: "401", answer: nil, want: queue.TaskResultPermanentFailure}, // the fake expects another key
		{name: "403", answer: echo(403, ""), want: queue.TaskResultPermanentFailure},
		{name: "413", answer: echo(413, ""), want: queue.TaskResultPermanentFailure},
		{name: "429", answer: echo(429, "Retry-After"), want: queue.TaskResultRetryFailure},
		{name: "500", answer: echo(500, ""), want: queue.TaskResultRetryFailure},
		{name: "503", answer: echo(503, ""), want: queue.TaskResultRetryFailure},
		{name: "plain text body", answer: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, "upstream said %s", r.Header.Get("Authorization"))
		}, want: queue.TaskResultRetryFailure},
		{name: "timeout", answer: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			opts: []email.Option{email.WithTimeout(50 * time.Millisecond)}, want: queue.TaskResultRetryFailure},
		{name: "cancelled run", ctx: cancelled, want: queue.TaskResultRetryFailure},
		{name: "bad data holding the key", data: keyInData, want: queue.TaskResultPermanentFailure},
		{name: "network error", opts: []email.Option{email.WithHost(closedPortURL(t))}, want: queue.TaskResultRetryFailure},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			f := newFakeSendGrid(t, p.answer)
			if p.name != "401" {
				f.key = canaryKey
			}
			a, err := email.New(canaryKey, append([]email.Option{email.WithHost(f.srv.URL)}, p.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			data := p.data
			if data == nil {
				data = simplePayload()
			}
			task := taskOf(t, data)
			if p.ctx != nil {
				task = task.WithContext(p.ctx)
			}
			res, msg := a.Do(task)
			if res != p.want {
				t.Fatalf("result %s (%s), want %s", res, msg, p.want)
			}
			if strings.Contains(string(msg), canaryKey) {
				t.Errorf("task message holds the API key: %s", msg)
			}
			if !strings.Contains(string(msg), "[redacted]") && p.name != "timeout" && p.name != "cancelled run" && p.name != "network error" {
				t.Errorf("message %q: the echoed key was not replaced (did the server echo reach it?)", msg)
			}
		})
	}

	// Errors from New, and the action printed with every verb.
	_, err := email.New(canaryKey, email.WithHost("http://"+canaryKey+".example/path"))
	if err == nil || strings.Contains(err.Error(), canaryKey) {
		t.Errorf("New error %v holds the key or is missing", err)
	}
	a, err := email.New(canaryKey)
	if err != nil {
		t.Fatal(err)
	}
	bad := email.NewEmailSendgridAction(canaryKey+"\n", nil)
	_, msg := bad.Do(taskOf(t, simplePayload()))
	printed := fmt.Sprintf("%v %+v %#v %s %q %x %d %v %+v %#v", a, a, a, a, a, a, a, *a, *a, *a) + string(msg)
	if strings.Contains(printed, canaryKey) || strings.Contains(printed, fmt.Sprintf("%x", canaryKey)) {
		t.Errorf("printed action holds the key: %s", printed)
	}
	if strings.Contains(logs.String(), canaryKey) {
		t.Errorf("log output holds the key: %s", logs.String())
	}
}
