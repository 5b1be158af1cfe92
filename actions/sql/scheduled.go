package sqlaction

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DefaultScheduledTimeout bounds a Scheduled run when no WithTimeout option
// is given, so a reconciliation stuck behind a lock cannot hold its stream
// forever. WithTimeout(0) removes the bound.
const DefaultScheduledTimeout = 10 * time.Minute

// Scheduled is a queue.ScheduledAction that runs one statement each time the
// schedule fires: a reconciliation such as an UPDATE … FROM, or REFRESH
// MATERIALIZED VIEW. It is safe for concurrent use.
type Scheduled struct {
	stream string
	r      runner
}

// NewScheduled returns a Scheduled statement that runs on db in the named
// stream. The statement takes no parameters (there is no task to take them
// from); New's other rules apply. Without WithTimeout a run is bounded by
// DefaultScheduledTimeout.
func NewScheduled(db *sql.DB, stream, statement string, opts ...Option) (*Scheduled, error) {
	if strings.TrimSpace(stream) == "" {
		return nil, errors.New("sqlaction: empty stream name")
	}
	r, err := newRunner(db, statement, opts)
	if err != nil {
		return nil, err
	}
	if len(r.stmt.params) > 0 {
		return nil, fmt.Errorf("sqlaction: a scheduled statement has no task data to bind, but it names parameters: %s",
			strings.Join(r.stmt.params, ", "))
	}
	if !r.cfg.timeoutSet {
		r.cfg.timeout = DefaultScheduledTimeout
	}
	return &Scheduled{stream: stream, r: r}, nil
}

// Stream returns the stream the statement runs in.
func (s *Scheduled) Stream() string { return s.stream }

// Do runs the statement once and commits it. A failure comes back as an
// *Error for the manager's error handler; Classify(err) says whether it may
// pass on the next run.
func (s *Scheduled) Do() error { return s.DoContext(context.Background()) }

// DoContext is Do under ctx, for callers that want to cancel a run.
func (s *Scheduled) DoContext(ctx context.Context) error {
	if _, err := s.r.run(ctx, nil); err != nil {
		return &Error{Stream: s.stream, Err: err}
	}
	return nil
}

// Error is a failed Scheduled run.
type Error struct {
	// Stream is the stream of the statement that failed.
	Stream string
	// Err is the error from the database or the driver.
	Err error
}

// Error describes the failure with PostgreSQL's message and SQLSTATE.
func (e *Error) Error() string {
	return fmt.Sprintf("sqlaction: scheduled statement in stream %s: %s", e.Stream, describe(e.Err))
}

// Unwrap returns the underlying error, so errors.As finds a *pq.Error.
func (e *Error) Unwrap() error { return e.Err }
