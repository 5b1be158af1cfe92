package webhook_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/actions/webhook"
)

const (
	canarySecret = "whsec-CANARY-never-show"
	canaryToken  = "tok-CANARY-in-url"
	canaryPass   = "pw-CANARY-in-url"
)

// echoAll answers status with a body repeating the secret and the URL's
// token, as a careless receiver might; messages must still hide them.
func echoAll(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "http://elsewhere.example/?"+r.URL.RawQuery)
		w.WriteHeader(code)
		fmt.Fprintf(w, "secret %s query %s", canarySecret, r.URL.RawQuery)
	}
}

func hidesSecrets(t *testing.T, texts ...string) {
	t.Helper()
	for _, text := range texts {
		for _, s := range []string{canarySecret, canaryToken, canaryPass} {
			if strings.Contains(text, s) {
				t.Errorf("%q shows %s", text, s)
			}
		}
	}
}

// The secret, and a URL's token or password, appear in no message on any
// answer path, nor in errors or the printed action.
func TestSecretsNeverShown(t *testing.T) {
	opts := []webhook.Option{webhook.WithSecret(canarySecret), webhook.WithTimeout(50 * time.Millisecond)}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range []struct {
		name   string
		answer http.HandlerFunc
		ctx    context.Context
		closed bool
	}{
		{name: "200", answer: echoAll(200)},
		{name: "302", answer: echoAll(302)},
		{name: "400", answer: echoAll(400)},
		{name: "404", answer: echoAll(404)},
		{name: "429", answer: echoAll(429)},
		{name: "500", answer: echoAll(500)},
		{name: "timeout", answer: hang(t)},
		{name: "cancelled", ctx: cancelled},
		{name: "network error", closed: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newReceiver(t, map[string]http.HandlerFunc{"/hook": c.answer})
			base := r.URL("/hook")
			if c.closed {
				base = closedPortURL(t, "/hook")
			}
			url := strings.Replace(base, "http://", "http://user:"+canaryPass+"@", 1) + "?token=" + canaryToken
			a := newAction(t, url, opts...)
			task := taskOf(t, `{}`)
			if c.ctx != nil {
				task = task.WithContext(c.ctx)
			}
			_, msg := a.Do(task)
			hidesSecrets(t, string(msg))
			if c.answer != nil && !c.closed && !strings.Contains(string(msg), "[redacted]") && c.name != "200" && c.name != "302" && c.name != "timeout" {
				t.Errorf("message %q: the echoed secret did not reach it, so the test proves nothing", msg)
			}

			mw, err := webhook.Lifecycle(webhook.Hooks{Start: url, Fail: url}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			_, lmsg := queue.Chain(queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
				return queue.TaskResultRetryFailure, "action failed"
			}), mw).Do(task)
			hidesSecrets(t, string(lmsg))
			printed := fmt.Sprintf("%v %+v %#v %s %q %x %d %v", a, a, a, a, a, a, a, *a)
			hidesSecrets(t, printed)
			if strings.Contains(printed, fmt.Sprintf("%x", canarySecret)) {
				t.Errorf("printed action holds the hex secret")
			}
		})
	}
	_, err := webhook.New("http://example.com/?token="+canaryToken, webhook.WithSecret(""))
	if err == nil {
		t.Fatal("empty secret accepted")
	}
	hidesSecrets(t, err.Error())
}
