package sqlaction

import (
	"database/sql"
	"fmt"
	"time"
)

// Option configures an Action or a Scheduled statement.
type Option func(*config)

// config holds what the options set.
type config struct {
	timeout    time.Duration
	timeoutSet bool
	lock       time.Duration
	isolation  sql.IsolationLevel
	err        error
}

// WithTimeout bounds each run of the statement: it becomes the transaction's
// statement_timeout (SET LOCAL), and the run's context is cancelled shortly
// after it as a backstop should the server not answer. Zero means no bound
// of its own; a task's deadline (Task.Context) still applies. Negative
// durations are refused by New and NewScheduled.
func WithTimeout(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.fail(fmt.Errorf("negative timeout %s", d))
		}
		c.timeout, c.timeoutSet = d, true
	}
}

// WithLockTimeout sets the transaction's lock_timeout: how long the statement
// waits for a row or table lock before giving up with SQLSTATE 55P03, which
// is retried. Zero (the default) leaves the server's setting alone.
func WithLockTimeout(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.fail(fmt.Errorf("negative lock timeout %s", d))
		}
		c.lock = d
	}
}

// WithIsolation runs the statement's transaction at the given isolation
// level, for example sql.LevelSerializable. The default is the server's
// default (normally READ COMMITTED). Serialization failures (40001) are
// retried.
func WithIsolation(level sql.IsolationLevel) Option {
	return func(c *config) {
		switch level {
		case sql.LevelDefault, sql.LevelReadCommitted, sql.LevelRepeatableRead, sql.LevelSerializable:
		default:
			c.fail(fmt.Errorf("isolation level %s is not supported by PostgreSQL", level))
		}
		c.isolation = level
	}
}

func (c *config) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

func newConfig(opts []Option) (config, error) {
	var c config
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	return c, c.err
}
