package sqlaction

import (
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/esync/queue"
)

// Action is a queue.TaskAction that runs one configured statement per task,
// with its named parameters bound from the task's data. It is safe for
// concurrent use.
type Action struct {
	r runner
}

// New returns an Action running statement on db. Named parameters
// (:customer_id) are rewritten to $1..$n here, once; each run binds their
// values from the task's data. Options set the timeout, lock timeout and
// isolation level.
//
// New refuses a nil db, an empty statement, an unterminated string, quoted
// identifier or comment, positional placeholders ($1), and invalid options.
// It does not check the statement against the database; a statement that
// PostgreSQL rejects fails each task with the server's message.
func New(db *sql.DB, statement string, opts ...Option) (*Action, error) {
	r, err := newRunner(db, statement, opts)
	if err != nil {
		return nil, err
	}
	return &Action{r: r}, nil
}

// Params returns the names of the statement's parameters in the order they
// are bound ($1, $2, …).
func (a *Action) Params() []string { return append([]string(nil), a.r.stmt.params...) }

// Query returns the statement as PostgreSQL receives it, with $1..$n in
// place of the names.
func (a *Action) Query() string { return a.r.stmt.query }

// Do runs the statement for task within task.Context() and commits it.
//
// It reports queue.TaskResultSuccess with the number of affected rows;
// queue.TaskResultPermanentFailure when a parameter is missing from the task
// data (nothing is run) or the error is permanent by Classify; and
// queue.TaskResultRetryFailure for errors Classify deems passing. The message
// carries PostgreSQL's error text with its SQLSTATE.
//
// Like every task, a run may happen more than once (a retry after a lost
// connection cannot know whether COMMIT arrived), so statements should be
// idempotent.
func (a *Action) Do(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
	args, err := bindArgs(task, a.r.stmt.params)
	if err != nil {
		return queue.TaskResultPermanentFailure, queue.TaskMessage(err.Error())
	}
	n, err := a.r.run(task.Context(), args)
	if err != nil {
		return Classify(err), queue.TaskMessage(describe(err))
	}
	return queue.TaskResultSuccess, queue.TaskMessage(rowsMessage(n))
}

func newRunner(db *sql.DB, statement string, opts []Option) (runner, error) {
	if db == nil {
		return runner{}, errors.New("sqlaction: nil *sql.DB")
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return runner{}, fmt.Errorf("sqlaction: %w", err)
	}
	stmt, err := compile(statement)
	if err != nil {
		return runner{}, fmt.Errorf("sqlaction: %w", err)
	}
	return runner{db: db, stmt: stmt, cfg: cfg}, nil
}

func rowsMessage(n int64) string {
	if n == 1 {
		return "1 row affected"
	}
	return strconv.FormatInt(n, 10) + " rows affected"
}
