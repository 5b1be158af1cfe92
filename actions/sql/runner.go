package sqlaction

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"time"
)

// backstop is how long after its own timeout a run's context is cancelled,
// in case the server does not enforce statement_timeout (a lost network,
// a stuck server).
const backstop = 2 * time.Second

// runner runs one compiled statement in its own transaction.
type runner struct {
	db   *sql.DB
	stmt statement
	cfg  config
}

// run executes the statement with args in a transaction and commits it. It
// returns the number of rows the statement reported.
func (r *runner) run(ctx context.Context, args []any) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if r.cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.cfg.timeout+backstop)
		defer cancel()
	}
	statementTimeout := r.cfg.timeout
	if deadline, ok := ctx.Deadline(); ok {
		left := time.Until(deadline)
		if left <= 0 {
			return 0, context.DeadlineExceeded
		}
		if statementTimeout == 0 || left < statementTimeout {
			statementTimeout = left
		}
	}

	tx, err := r.db.BeginTx(ctx, &sql.TxOptions{Isolation: r.cfg.isolation})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if err := setTimeouts(ctx, tx, statementTimeout, r.cfg.lock); err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, r.stmt.query, args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		n = 0
	}
	if err := tx.Commit(); err != nil {
		if errors.Is(err, sql.ErrTxDone) && ctx.Err() != nil {
			// database/sql rolled back because the context ended.
			return 0, ctx.Err()
		}
		return 0, err
	}
	return n, nil
}

// setTimeouts applies statement_timeout and lock_timeout to the transaction
// only (the SET LOCAL of set_config(..., true)), so a pooled connection goes
// back to the pool with its own settings.
func setTimeouts(ctx context.Context, tx *sql.Tx, statement, lock time.Duration) error {
	switch {
	case statement > 0 && lock > 0:
		_, err := tx.ExecContext(ctx,
			"SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $2, true)",
			millis(statement), millis(lock))
		return err
	case statement > 0:
		_, err := tx.ExecContext(ctx, "SELECT set_config('statement_timeout', $1, true)", millis(statement))
		return err
	case lock > 0:
		_, err := tx.ExecContext(ctx, "SELECT set_config('lock_timeout', $1, true)", millis(lock))
		return err
	}
	return nil
}

// millis renders d as a PostgreSQL duration in whole milliseconds, rounded
// up and at least 1 (0 would disable the timeout).
func millis(d time.Duration) string {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return strconv.FormatInt(max(int64(ms), 1), 10) + "ms"
}
