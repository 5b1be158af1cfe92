package webhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/actions/webhook"
)

// The signature is "sha256=" + hex HMAC-SHA256("<timestamp>.<body>"),
// computed here independently of the package.
func TestSignatureHeader(t *testing.T) {
	secret := "whsec-test"
	r := newReceiver(t, nil)
	res, msg := newAction(t, r.URL("/hook"), webhook.WithSecret(secret)).Do(taskOf(t, `{"a":1}`))
	expect(t, res, msg, queue.TaskResultSuccess)
	got := r.journal.Requests()[0]

	ts := got.Header.Get(webhook.HeaderTimestamp)
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
		t.Fatalf("timestamp %q: %v", ts, err)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(got.Body)))
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if sig := got.Header.Get(webhook.HeaderSignature); sig != want {
		t.Errorf("signature %q, want %q", sig, want)
	}
	if err := webhook.Verify([]byte(secret), got.Header, got.Body, 5*time.Minute); err != nil {
		t.Errorf("Verify refused a genuine request: %v", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	secret := []byte("whsec-test")
	body := []byte(`{"id":1}`)
	signed := func(ts int64, b []byte, key []byte) http.Header {
		h := http.Header{}
		h.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts, 10))
		h.Set(webhook.HeaderSignature, webhook.Sign(key, ts, b))
		return h
	}
	now := time.Now().Unix()
	for name, c := range map[string]struct {
		h    http.Header
		body []byte
	}{
		"tampered body":    {signed(now, body, secret), []byte(`{"id":2}`)},
		"wrong secret":     {signed(now, body, []byte("other")), body},
		"old timestamp":    {signed(now-3600, body, secret), body},
		"future timestamp": {signed(now+3600, body, secret), body},
		"no headers":       {http.Header{}, body},
		"changed timestamp": {func() http.Header {
			h := signed(now, body, secret)
			h.Set(webhook.HeaderTimestamp, strconv.FormatInt(now-1, 10))
			return h
		}(), body},
		"other scheme": {func() http.Header { h := signed(now, body, secret); h.Set(webhook.HeaderSignature, "md5=00"); return h }(), body},
	} {
		if err := webhook.Verify(secret, c.h, c.body, 5*time.Minute); !errors.Is(err, webhook.ErrBadSignature) {
			t.Errorf("%s: Verify returned %v, want ErrBadSignature", name, err)
		}
	}
	if err := webhook.Verify(secret, signed(now-3600, body, secret), body, 0); err != nil {
		t.Errorf("maxAge 0 should not check the age: %v", err)
	}
}
