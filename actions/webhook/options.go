package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// DefaultTimeout bounds one webhook request when no WithTimeout option is
// given. The task's own deadline (task.Context()) applies as well.
const DefaultTimeout = 10 * time.Second

// Option configures an Action or the Lifecycle middleware.
type Option func(*settings) error

type settings struct {
	secret  []byte
	timeout time.Duration
	client  *http.Client
}

// WithSecret signs every request with secret (see HeaderSignature). The
// secret never appears in task messages or errors.
func WithSecret(secret string) Option {
	return func(s *settings) error {
		if secret == "" {
			return errors.New("empty secret")
		}
		s.secret = []byte(secret)
		return nil
	}
}

// WithTimeout bounds each request; d must be positive.
func WithTimeout(d time.Duration) Option {
	return func(s *settings) error {
		if d <= 0 {
			return fmt.Errorf("timeout %s is not positive", d)
		}
		s.timeout = d
		return nil
	}
}

// WithHTTPClient sends through c (for a proxy or custom TLS settings). A
// copy of c is used that does not follow redirects and reads at most a
// bounded amount of each answer.
func WithHTTPClient(c *http.Client) Option {
	return func(s *settings) error {
		if c == nil {
			return errors.New("nil HTTP client")
		}
		s.client = c
		return nil
	}
}
