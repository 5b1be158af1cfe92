package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/lib/pq"
)

// DeleteFinishedState removes up to limit tasks of one final state that
// finished before the given time, oldest rows first as the index yields
// them, and reports how many.
func (d *PostgresDriver) DeleteFinishedState(ctx context.Context, state TaskState, before time.Time, limit int) (int, error) {
	if !state.Terminal() {
		return 0, fmt.Errorf("queue: delete finished tasks: %q is not a final state", state)
	}
	// The state is written into the statement (it is one of four known
	// words) so the planner can use the partial index on final states.
	q := d.names.render("deleteFinishedState", `
DELETE FROM {{.Table}}
WHERE id IN (
	SELECT id FROM {{.Table}}
	WHERE state = `+pq.QuoteLiteral(string(state))+` AND finished_at < $1
	LIMIT $2
	FOR UPDATE SKIP LOCKED)`)
	return d.execCount(ctx, "delete finished tasks", q, before, limit)
}
