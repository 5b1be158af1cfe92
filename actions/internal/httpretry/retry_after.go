// Package httpretry reads how long an HTTP peer asks a client to wait.
package httpretry

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxWait caps a requested wait, so a wild header cannot park a task for
// years.
const MaxWait = 24 * time.Hour

// RetryAfter parses a Retry-After header value, in seconds or as an HTTP
// date (measured from now), capped at MaxWait. It reports false when the
// value is empty or unreadable.
func RetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
		return time.Duration(min(secs, int64(MaxWait/time.Second))) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return Until(at, now), true
	}
	return 0, false
}

// Until is the wait from now until at, between zero and MaxWait.
func Until(at, now time.Time) time.Duration {
	return min(max(at.Sub(now), 0), MaxWait)
}
