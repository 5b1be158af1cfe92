package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue/examples/internal/userdb"
)

// TestEmailExample runs the example end to end; run fails unless every
// valid message was delivered once and unchanged, the throttled one was
// tried twice, the invalid one was never queued and no task FAILED. The
// report must show the 429, the refusal and the final states, and never the
// API key. It runs against a user's database (with a pending email.send
// task of its own), which it leaves untouched.
func TestEmailExample(t *testing.T) {
	user := userdb.New(t, false)
	t.Setenv("DATABASE_URL", user.DSN)
	defer user.RequireUntouched(t)
	const key = "SG.example-test-key.0123456789"
	var out bytes.Buffer
	if err := run(context.Background(), config{apiKey: key, retryAfter: time.Second, timeout: time.Minute, out: &out}); err != nil {
		t.Fatalf("%v\noutput:\n%s", err, out.String())
	}
	report := out.String()
	if strings.Contains(report, key) || strings.Contains(report, "example-test-key") {
		t.Errorf("the report shows the API key:\n%s", report)
	}
	for _, want := range []string{"refused welcome:erin", "429 Too Many Requests to bob@example.net (Retry-After 1s", "202 Accepted to bob@example.net", "DONE", "[redacted]"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
}

// TestSendGridServer checks the stand-in refuses what SendGrid refuses and
// throttles once, so the example's 202s mean something.
func TestSendGridServer(t *testing.T) {
	s := StartSendGrid("SG.k")
	defer s.Close()
	s.ThrottleOnce("b@example.com", time.Second)
	post := func(auth, body string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, s.URL()+"/v3/mail/send", strings.NewReader(body))
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	good := `{"from":{"email":"a@example.com"},"personalizations":[{"to":[{"email":"b@example.com"}]}],"subject":"s","content":[{"type":"text/plain","value":"x"}]}`
	for name, c := range map[string]struct {
		auth, body string
		status     int
	}{
		"wrong key":      {"Bearer other", good, http.StatusUnauthorized},
		"no subject":     {"Bearer SG.k", strings.Replace(good, `"subject":"s",`, "", 1), http.StatusBadRequest},
		"no content":     {"Bearer SG.k", strings.Replace(good, `,"content":[{"type":"text/plain","value":"x"}]`, "", 1), http.StatusBadRequest},
		"html first":     {"Bearer SG.k", strings.Replace(good, `[{"type":"text/plain","value":"x"}]`, `[{"type":"text/html","value":"x"},{"type":"text/plain","value":"x"}]`, 1), http.StatusBadRequest},
		"bad attachment": {"Bearer SG.k", strings.Replace(good, `"subject"`, `"attachments":[{"content":"%%%","filename":"f"}],"subject"`, 1), http.StatusBadRequest},
		"bad address":    {"Bearer SG.k", strings.Replace(good, `b@example.com`, `b`, 1), http.StatusBadRequest},
	} {
		if resp := post(c.auth, c.body); resp.StatusCode != c.status {
			t.Errorf("%s: %d, want %d", name, resp.StatusCode, c.status)
		}
	}
	if resp := post("Bearer SG.k", good); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("first good request: %d Retry-After %q, want 429 with 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp := post("Bearer SG.k", good); resp.StatusCode != http.StatusAccepted {
		t.Errorf("second good request: %d, want 202", resp.StatusCode)
	}
	if d := s.Delivered(); len(d) != 1 || s.Attempts("b@example.com") != 2 || s.Throttled() != 1 {
		t.Errorf("delivered %v, attempts %d, throttled %d; want 1, 2, 1", d, s.Attempts("b@example.com"), s.Throttled())
	}
}
