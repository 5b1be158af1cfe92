package queue

import (
	"context"
	"fmt"
	"time"
)

// QueueStat is the number of unfinished tasks of one name in one state, as
// read by QueueStats.
type QueueStat struct {
	Name  string
	State TaskState // READY, RETRY or IN PROGRESS
	Count int
	// OldestDueWait is how long the longest-waiting due task of this name
	// and state has been due (since its run-after time), by the database's
	// clock; zero when none is due. Only READY and RETRY tasks are due.
	OldestDueWait time.Duration
}

// queueStatsQuery counts the unfinished tasks per name and state. Its two
// halves have the predicates of the partial indexes of pending tasks
// (pending_idx) and of running tasks (key_running_idx), so each reads only
// its index's rows: the cost follows the backlog, not the finished rows
// kept for retention.
const queueStatsQuery = `
SELECT task_name, state, count(*),
	coalesce(date_part('epoch', now() - min(do_after) FILTER (WHERE do_after <= now())), 0)
FROM {{.Table}}
WHERE state IN ('READY', 'RETRY') AND task_name IS NOT NULL
GROUP BY task_name, state
UNION ALL
SELECT task_name, state, count(*), 0
FROM {{.Table}}
WHERE state = 'IN PROGRESS'
GROUP BY task_name, state
ORDER BY 1, 2`

// QueueStats reads the depth of the queue in one grouped query: per task
// name and unfinished state (READY, RETRY, IN PROGRESS), how many tasks
// there are and since when the oldest due one has been waiting. Finished
// tasks are not counted, so the query stays cheap however many are kept.
// Metrics exporters poll it (see package otelqueue).
func (d *PostgresDriver) QueueStats(ctx context.Context) ([]QueueStat, error) {
	rows, err := d.db.QueryContext(ctx, d.names.render("queueStats", queueStatsQuery))
	if err != nil {
		return nil, fmt.Errorf("queue: queue stats: %w", err)
	}
	defer rows.Close()
	var out []QueueStat
	for rows.Next() {
		var s QueueStat
		var state string
		var wait float64
		if err := rows.Scan(&s.Name, &state, &s.Count, &wait); err != nil {
			return nil, fmt.Errorf("queue: queue stats: %w", err)
		}
		s.State = TaskState(state)
		s.OldestDueWait = time.Duration(wait * float64(time.Second))
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("queue: queue stats: %w", err)
	}
	return out, nil
}
