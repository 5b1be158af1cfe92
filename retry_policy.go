package queue

import (
	"math"
	"math/rand/v2"
	"time"
)

// RetryPolicy decides how long a task waits before its next attempt.
type RetryPolicy interface {
	// Backoff returns the wait after the given attempt (1 for the first run)
	// failed.
	Backoff(attempt int) time.Duration
}

// ExponentialBackoff waits Base·2^(attempt-1), capped at Max, with up to
// Jitter (a fraction, 0..1) of the wait added or taken away at random so that
// many failures do not come back at once.
type ExponentialBackoff struct {
	Base   time.Duration
	Max    time.Duration
	Jitter float64
}

// DefaultRetryPolicy starts at one second and caps at one hour, ±20%.
var DefaultRetryPolicy RetryPolicy = ExponentialBackoff{Base: time.Second, Max: time.Hour, Jitter: 0.2}

// Backoff implements RetryPolicy.
func (b ExponentialBackoff) Backoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	wait := float64(b.Base) * math.Pow(2, float64(attempt-1))
	if b.Max > 0 && wait > float64(b.Max) {
		wait = float64(b.Max)
	}
	if j := min(max(b.Jitter, 0), 1); j > 0 {
		wait *= 1 + j*(2*rand.Float64()-1)
	}
	if b.Max > 0 && wait > float64(b.Max) {
		wait = float64(b.Max)
	}
	return time.Duration(wait)
}

// ConstantBackoff waits the same time after every failure.
type ConstantBackoff time.Duration

// Backoff implements RetryPolicy.
func (c ConstantBackoff) Backoff(int) time.Duration { return time.Duration(c) }
