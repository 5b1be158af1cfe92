package queue

import (
	"fmt"
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

// Validate reports a policy that would retry at once or cannot be applied:
// Base must be positive, Max zero (no cap) or at least Base, and Jitter
// within 0..1.
func (b ExponentialBackoff) Validate() error {
	switch {
	case b.Base <= 0:
		return fmt.Errorf("queue: ExponentialBackoff: Base must be positive, got %s", b.Base)
	case b.Max < 0 || (b.Max > 0 && b.Max < b.Base):
		return fmt.Errorf("queue: ExponentialBackoff: Max must be 0 (no cap) or at least Base, got %s", b.Max)
	case b.Jitter < 0 || b.Jitter > 1 || math.IsNaN(b.Jitter):
		return fmt.Errorf("queue: ExponentialBackoff: Jitter must be within 0..1, got %g", b.Jitter)
	}
	return nil
}

// Validate reports a negative wait.
func (c ConstantBackoff) Validate() error {
	if c < 0 {
		return fmt.Errorf("queue: ConstantBackoff must not be negative, got %s", time.Duration(c))
	}
	return nil
}

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
