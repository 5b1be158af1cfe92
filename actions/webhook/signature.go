package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Headers sent with every webhook request.
const (
	// HeaderSignature carries "sha256=<hex>", the HMAC-SHA256 of
	// "<timestamp>.<body>" under the shared secret; sent only when a secret
	// is configured.
	HeaderSignature = "X-Esync-Signature"
	// HeaderTimestamp carries the Unix time (seconds) the request was
	// signed; it is part of the signed text so a receiver can refuse
	// replays of old requests.
	HeaderTimestamp = "X-Esync-Timestamp"
	// HeaderEvent names the event: task, start, success or fail.
	HeaderEvent = "X-Esync-Event"
	// HeaderTaskID carries the task's ID, a natural idempotency key: the
	// same task may be delivered more than once.
	HeaderTaskID = "X-Esync-Task-Id"
)

// Sign returns the signature header value for body sent at timestamp:
// "sha256=" and the hex HMAC-SHA256 of "<timestamp>.<body>" under secret.
func Sign(secret []byte, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strconv.FormatInt(timestamp, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// ErrBadSignature is wrapped by every error Verify returns.
var ErrBadSignature = errors.New("webhook: bad signature")

// Verify checks a received request's signature headers against its body,
// for receivers. When maxAge is positive it also refuses a timestamp more
// than maxAge away from now, so that an old request cannot be replayed.
func Verify(secret []byte, header http.Header, body []byte, maxAge time.Duration) error {
	ts := header.Get(HeaderTimestamp)
	sig := header.Get(HeaderSignature)
	if ts == "" || sig == "" {
		return fmt.Errorf("%w: %s or %s header missing", ErrBadSignature, HeaderTimestamp, HeaderSignature)
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not a Unix time", ErrBadSignature, ts)
	}
	if !strings.HasPrefix(sig, "sha256=") {
		return fmt.Errorf("%w: unknown scheme (want sha256=)", ErrBadSignature)
	}
	if !hmac.Equal([]byte(sig), []byte(Sign(secret, unix, body))) {
		return fmt.Errorf("%w: signature does not match the body", ErrBadSignature)
	}
	if maxAge > 0 {
		if age := time.Since(time.Unix(unix, 0)); age > maxAge || age < -maxAge {
			return fmt.Errorf("%w: timestamp is %s away from now, more than %s", ErrBadSignature, age.Round(time.Second), maxAge)
		}
	}
	return nil
}
