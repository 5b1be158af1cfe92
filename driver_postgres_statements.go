package queue

import (
	"context"
	"database/sql"
	"sync"
)

// preparedStatements prepares the queue's frequent statements once and lets
// database/sql keep them prepared on each connection it uses. Parsing and
// planning the insert and claim statements costs more than running them for
// one task (here 0.67 ms against 0.20 ms for a one-task insert). Off, every
// call sends its text, as a transaction-pooling PgBouncer older than 1.21
// needs.
type preparedStatements struct {
	db *sql.DB
	on bool

	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

// WithPreparedStatements turns prepared statements for inserts, claims,
// finishes, lease extensions and CDC success records on or off (default
// on). Turn them off behind a PgBouncer in transaction mode older than 1.21
// (or without max_prepared_statements).
func WithPreparedStatements(on bool) PostgresOption {
	return func(c *postgresConfig) { c.prepare = on }
}

// query runs a statement that returns rows, prepared when that is on.
func (p *preparedStatements) query(ctx context.Context, text string, args ...any) (*sql.Rows, error) {
	st, err := p.prepared(ctx, text)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return p.db.QueryContext(ctx, text, args...)
	}
	return st.QueryContext(ctx, args...)
}

// exec runs a statement that returns no rows, prepared when that is on.
func (p *preparedStatements) exec(ctx context.Context, text string, args ...any) (sql.Result, error) {
	st, err := p.prepared(ctx, text)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return p.db.ExecContext(ctx, text, args...)
	}
	return st.ExecContext(ctx, args...)
}

// queryRow is query for one row.
func (p *preparedStatements) queryRow(ctx context.Context, text string, args ...any) *sql.Row {
	st, err := p.prepared(ctx, text)
	if err != nil || st == nil {
		// On a failed prepare, running the text reports the same error.
		return p.db.QueryRowContext(ctx, text, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// prepared returns the prepared statement for text, preparing it on first
// use; nil when prepared statements are off. A statement that fails to
// prepare (the queue is not migrated yet) is tried again on the next call.
func (p *preparedStatements) prepared(ctx context.Context, text string) (*sql.Stmt, error) {
	if !p.on {
		return nil, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.stmts[text]; st != nil {
		return st, nil
	}
	st, err := p.db.PrepareContext(ctx, text)
	if err != nil {
		return nil, err
	}
	if p.stmts == nil {
		p.stmts = map[string]*sql.Stmt{}
	}
	p.stmts[text] = st
	return st, nil
}

// close closes every prepared statement.
func (p *preparedStatements) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, st := range p.stmts {
		st.Close()
	}
	p.stmts = nil
}
