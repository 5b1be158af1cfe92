package email

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// SendGrid API hosts. GlobalHost is the default.
const (
	// GlobalHost is SendGrid's worldwide API host.
	GlobalHost = "https://api.sendgrid.com"
	// EUHost is SendGrid's EU regional API host, for EU-pinned subusers.
	EUHost = "https://api.eu.sendgrid.com"
)

// DefaultTimeout bounds one send when no WithTimeout option is given. The
// task's own deadline (task.Context()) applies as well; the earlier wins.
const DefaultTimeout = 30 * time.Second

// Option configures an Action.
type Option func(*settings) error

type settings struct {
	host    string
	timeout time.Duration
	client  *http.Client
	bcc     *Address
}

// WithHost sends to another SendGrid API host, such as EUHost or a local
// test server: a scheme and host, with an optional port ("http://127.0.0.1:8080").
func WithHost(host string) Option {
	return func(s *settings) error {
		u, err := url.Parse(host)
		if err != nil {
			return fmt.Errorf("host %q: %v", host, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("host %q: want scheme and host only, such as %q", host, EUHost)
		}
		s.host = strings.TrimSuffix(host, "/")
		return nil
	}
}

// WithTimeout bounds each send; d must be positive.
func WithTimeout(d time.Duration) Option {
	return func(s *settings) error {
		if d <= 0 {
			return fmt.Errorf("timeout %s is not positive", d)
		}
		s.timeout = d
		return nil
	}
}

// WithHTTPClient sends through c (for a proxy or custom TLS settings). The
// action uses a copy of c that does not follow redirects and reads at most
// a bounded amount of each answer.
func WithHTTPClient(c *http.Client) Option {
	return func(s *settings) error {
		if c == nil {
			return errors.New("nil HTTP client")
		}
		s.client = c
		return nil
	}
}

// WithBCC blind-copies every message to addr, unless addr is already one of
// its recipients (as the original esync action did).
func WithBCC(addr string) Option {
	return func(s *settings) error {
		a := Address{Email: strings.TrimSpace(addr)}
		if err := a.validate(); err != nil {
			return fmt.Errorf("bcc: %w", err)
		}
		s.bcc = &a
		return nil
	}
}
