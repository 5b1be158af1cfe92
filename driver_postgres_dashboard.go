package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// This file holds the reads and bulk writes of the web dashboard (package
// web). Every statement finds its rows through an index (migration 015 adds
// the ones the queue's own statements did not need), and every list is
// bounded: a page of tasks examines at most DashboardScanWindow tasks, so a
// filter that matches nothing costs the same on a million tasks as on a
// thousand.

// DashboardScanWindow is how many tasks one page of DashboardListTasks
// examines at most along its index. A page that is not full by then says so
// (TaskPage.Partial) and the next page goes on from there.
const DashboardScanWindow = 20_000

// Most tasks on one page of DashboardListTasks.
const (
	DefaultDashboardPageSize = 50
	MaxDashboardPageSize     = 500
)

// dashboardBatch is how many tasks one statement of a bulk retry or cancel
// changes; a bulk action runs batch after batch.
const dashboardBatch = 1000

// ErrInvalidFilter is returned for a dashboard filter that cannot be run:
// an unknown state, a key or name longer than the queue stores, a time range
// that ends before it starts.
var ErrInvalidFilter = errors.New("queue: invalid filter")

// TaskListFilter selects tasks for the dashboard. Empty fields match
// everything.
type TaskListFilter struct {
	State         TaskState // one state, or "" for all
	Name          string    // exact task name
	Key           string    // exact task key
	KeyPrefix     string    // task keys starting with this text (byte-wise)
	CreatedAfter  time.Time // added at or after this time
	CreatedBefore time.Time // added before this time
	BeforeID      int64     // paging: tasks with a smaller id; 0 starts at the newest
	Limit         int       // page size; 0 means DefaultDashboardPageSize
}

// Validate reports why f cannot be run, wrapping ErrInvalidFilter.
func (f TaskListFilter) Validate() error {
	switch {
	case f.State != "" && !f.State.Valid():
		return fmt.Errorf("%w: unknown state %q", ErrInvalidFilter, f.State)
	case utf8.RuneCountInString(f.Name) > MaxNameLength:
		return fmt.Errorf("%w: task name is longer than %d characters", ErrInvalidFilter, MaxNameLength)
	case utf8.RuneCountInString(f.Key) > MaxKeyLength || utf8.RuneCountInString(f.KeyPrefix) > MaxKeyLength:
		return fmt.Errorf("%w: task key is longer than %d characters", ErrInvalidFilter, MaxKeyLength)
	case f.Key != "" && f.KeyPrefix != "":
		return fmt.Errorf("%w: give an exact key or a key prefix, not both", ErrInvalidFilter)
	case f.BeforeID < 0:
		return fmt.Errorf("%w: negative task id", ErrInvalidFilter)
	case f.Limit < 0 || f.Limit > MaxDashboardPageSize:
		return fmt.Errorf("%w: page size must be between 1 and %d", ErrInvalidFilter, MaxDashboardPageSize)
	case !f.CreatedAfter.IsZero() && !f.CreatedBefore.IsZero() && !f.CreatedAfter.Before(f.CreatedBefore):
		return fmt.Errorf("%w: the time range ends before it starts", ErrInvalidFilter)
	}
	for _, s := range []string{f.Name, f.Key, f.KeyPrefix} {
		if strings.ContainsRune(s, 0) || !utf8.ValidString(s) {
			return fmt.Errorf("%w: text must be UTF-8 without NUL bytes", ErrInvalidFilter)
		}
	}
	return nil
}

// TaskPage is one page of DashboardListTasks, newest first.
type TaskPage struct {
	Tasks []Task
	// NextBeforeID continues the list (TaskListFilter.BeforeID); 0 when no
	// older task can match.
	NextBeforeID int64
	// Partial is set when the page ended because DashboardScanWindow tasks
	// were examined, not because the list is exhausted: older tasks may
	// still match.
	Partial bool
}

// DashboardListTasks lists the tasks matching f, newest first, one page at
// a time (keyset paging on the id, never OFFSET).
func (d *PostgresDriver) DashboardListTasks(ctx context.Context, f TaskListFilter) (TaskPage, error) {
	if err := f.Validate(); err != nil {
		return TaskPage{}, err
	}
	limit := f.Limit
	if limit == 0 {
		limit = DefaultDashboardPageSize
	}
	var page TaskPage
	err := d.dashboardRead(ctx, func(tx *sql.Tx) error {
		q, err := d.dashboardSelection(ctx, tx, f, true)
		if err != nil || q.empty {
			return err
		}
		rows, err := tx.QueryContext(ctx, fmt.Sprintf("SELECT %s FROM (%s) w WHERE %s ORDER BY id DESC LIMIT %d",
			taskColumns, q.window(d.names.Table, "*"), q.filter, limit+1), q.args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var t Task
			if err := scanTask(rows, &t, nil); err != nil {
				return err
			}
			page.Tasks = append(page.Tasks, t)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(page.Tasks) > limit {
			page.Tasks = page.Tasks[:limit]
			page.NextBeforeID = page.Tasks[limit-1].ID
			return nil
		}
		// The page is not full: either the window ran out or the list did.
		var scanned int
		var lowest int64
		err = tx.QueryRowContext(ctx, "SELECT count(*), coalesce(min(id), 0) FROM ("+q.window(d.names.Table, "id")+") w",
			q.args[:q.accessArgs]...).Scan(&scanned, &lowest)
		if err != nil {
			return err
		}
		if scanned == DashboardScanWindow {
			page.Partial = true
			page.NextBeforeID = lowest
		}
		return nil
	})
	if err != nil {
		return TaskPage{}, fmt.Errorf("queue: list tasks for the dashboard: %w", err)
	}
	return page, nil
}

// taskSelection is a filter rendered as SQL. The access path is the union
// of branches, each naming rows the way one index holds them (their
// arguments come first); filter checks the rest.
type taskSelection struct {
	branches   []string
	filter     string
	args       []any
	accessArgs int
	empty      bool // no task can match
}

// window selects cols of the newest DashboardScanWindow rows of the access
// path, newest first.
func (s taskSelection) window(table, cols string) string {
	if len(s.branches) == 1 {
		return fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY id DESC LIMIT %d", cols, table, s.branches[0], DashboardScanWindow)
	}
	parts := make([]string, len(s.branches))
	for i, b := range s.branches {
		parts[i] = fmt.Sprintf("(SELECT %s FROM %s WHERE %s ORDER BY id DESC LIMIT %d)", cols, table, b, DashboardScanWindow)
	}
	return fmt.Sprintf("SELECT * FROM (%s) u ORDER BY id DESC LIMIT %d", strings.Join(parts, " UNION ALL "), DashboardScanWindow)
}

// keyBranches are the tasks of one key as the per-key indexes hold them,
// one branch per index, every task in exactly one: pending ones
// (key_pending_idx), the one in flight (key_running_idx), finished ones
// that started (key_started_idx) and finished ones that never started
// (key_unstarted_idx, migration 015).
var keyBranches = []string{
	`state NOT IN ('IN PROGRESS', 'DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED') AND finished_at IS NULL`,
	`state = 'IN PROGRESS'`,
	startedFinished,
	unstartedFinished,
}

// The finished tasks of a key, started or not; SupersedeChain reads both.
const (
	startedFinished   = `(attempts > 0 OR last_attempted > created_at) AND state <> 'IN PROGRESS' AND state NOT IN ('READY', 'RETRY')`
	unstartedFinished = `state IN ('DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED') AND NOT coalesce(attempts > 0 OR last_attempted > created_at, false)`
)

// sqlArgs numbers the arguments of a statement being built.
type sqlArgs struct{ list []any }

func (a *sqlArgs) add(v any) string {
	a.list = append(a.list, v)
	return fmt.Sprintf("$%d", len(a.list))
}

// dashboardSelection renders f. The access path is chosen by what f names:
// with byKey, an exact key (the per-key indexes, see keyBranches); a
// pending or failed state (pending_idx, failed_idx); a task in flight
// (key_running_idx); else the primary key. A key prefix is checked on the
// rows of that path (no index keeps keys in an order that LIKE can use
// under every collation, and one that did would cost every task a fifth
// more WAL). A time range becomes a range of ids, found along the primary
// key: ids are handed out in the order tasks are added, so the range holds
// the tasks added in that time (give or take tasks whose adding
// transaction ran for long).
func (d *PostgresDriver) dashboardSelection(ctx context.Context, q queryer, f TaskListFilter, byKey bool) (taskSelection, error) {
	var a sqlArgs
	var access []string
	branches := []string{"true"}
	if byKey && f.Key != "" {
		key := a.add(f.Key)
		branches = nil
		for _, b := range keyBranches {
			branches = append(branches, "task_key = "+key+" AND "+b)
		}
	} else {
		switch f.State {
		case TaskReady, TaskRetry:
			branches = []string{`state IN ('READY', 'RETRY') AND task_name IS NOT NULL`}
		case TaskFailed, TaskCancelled:
			branches = []string{`state IN ('FAILED', 'CANCELLED')`}
		case TaskInProgress:
			branches = []string{`state = 'IN PROGRESS'`}
		}
	}
	if f.BeforeID > 0 {
		access = append(access, "id < "+a.add(f.BeforeID))
	}
	if !f.CreatedAfter.IsZero() || !f.CreatedBefore.IsZero() {
		lo, hi, err := d.idRange(ctx, q, f.CreatedAfter, f.CreatedBefore)
		if err != nil {
			return taskSelection{}, err
		}
		if lo > hi {
			return taskSelection{empty: true}, nil
		}
		access = append(access, "id BETWEEN "+a.add(lo)+" AND "+a.add(hi))
	}
	for i := range branches {
		branches[i] = strings.Join(append([]string{branches[i]}, access...), " AND ")
	}
	sel := taskSelection{branches: branches, accessArgs: len(a.list)}
	var filter []string
	if f.Key != "" && !byKey {
		filter = append(filter, "task_key = "+a.add(f.Key))
	}
	if f.KeyPrefix != "" {
		filter = append(filter, "task_key LIKE "+a.add(likePrefix(f.KeyPrefix)))
	}
	if f.State != "" {
		filter = append(filter, "state = "+a.add(string(f.State)))
	}
	if f.Name != "" {
		filter = append(filter, "task_name = "+a.add(f.Name))
	}
	if !f.CreatedAfter.IsZero() {
		filter = append(filter, "coalesce(created_at, last_attempted) >= "+a.add(f.CreatedAfter))
	}
	if !f.CreatedBefore.IsZero() {
		filter = append(filter, "coalesce(created_at, last_attempted) < "+a.add(f.CreatedBefore))
	}
	if len(filter) == 0 {
		filter = append(filter, "true")
	}
	sel.filter = strings.Join(filter, " AND ")
	sel.args = a.list
	return sel, nil
}

// likePrefix turns a prefix into a LIKE pattern that matches it literally.
func likePrefix(prefix string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(prefix) + "%"
}

// queryer is what *sql.DB and *sql.Tx have in common for reads.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// idRange finds the ids of the tasks added in [after, before): a binary
// search along the primary key, one index probe per step. lo > hi when no
// task was added then.
func (d *PostgresDriver) idRange(ctx context.Context, q queryer, after, before time.Time) (lo, hi int64, err error) {
	var minID, maxID int64
	err = q.QueryRowContext(ctx, `SELECT coalesce(min(id), 0), coalesce(max(id), -1) FROM `+d.names.Table).Scan(&minID, &maxID)
	if err != nil || minID > maxID {
		return 1, 0, err
	}
	// firstAt is the smallest id added at or after t (maxID+1 if none).
	firstAt := func(t time.Time) (int64, error) {
		lo, hi := minID, maxID+1
		for lo < hi {
			mid := lo + (hi-lo)/2
			var id int64
			var at float64
			err := q.QueryRowContext(ctx, `SELECT id, date_part('epoch', coalesce(created_at, last_attempted)) FROM `+
				d.names.Table+` WHERE id >= $1 ORDER BY id LIMIT 1`, mid).Scan(&id, &at)
			if err != nil {
				return 0, err
			}
			if epochTime(at).Before(t) {
				lo = id + 1
			} else {
				hi = mid
			}
		}
		return lo, nil
	}
	lo, hi = minID, maxID
	if !after.IsZero() {
		if lo, err = firstAt(after); err != nil {
			return 0, 0, err
		}
	}
	if !before.IsZero() {
		first, err := firstAt(before)
		if err != nil {
			return 0, 0, err
		}
		hi = first - 1
	}
	return lo, hi, nil
}

// dashboardRead runs fn in a read-only transaction whose plans use indexes
// wherever one applies (sequential scans off: a dashboard read must not
// walk a big queue table because its statistics are stale) and whose
// statements give up after 30 seconds.
func (d *PostgresDriver) dashboardRead(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SET LOCAL enable_seqscan = off; SET LOCAL statement_timeout = '30s'`); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// NameStateCount is how many tasks of one name are in one state.
type NameStateCount struct {
	Name  string
	State TaskState
	Count int
}

// DashboardCounts counts the tasks that are pending, running, FAILED or
// CANCELLED, per name and state. (Tasks that end DONE or SUPERSEDED pile up
// until retention removes them; counting them all would read the whole
// table. DashboardFinished counts those of the last minutes.)
func (d *PostgresDriver) DashboardCounts(ctx context.Context) ([]NameStateCount, error) {
	var out []NameStateCount
	err := d.dashboardRead(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, d.names.render("dashboardCounts", `
SELECT task_name, state, count(*) FROM {{.Table}}
WHERE state IN ('READY', 'RETRY') AND task_name IS NOT NULL GROUP BY 1, 2
UNION ALL
SELECT task_name, state, count(*) FROM {{.Table}} WHERE state = 'IN PROGRESS' GROUP BY 1, 2
UNION ALL
SELECT task_name, state, count(*) FROM {{.Table}} WHERE state IN ('FAILED', 'CANCELLED') GROUP BY 1, 2
ORDER BY 1, 2`))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c NameStateCount
			var state string
			if err := rows.Scan(&c.Name, &state, &c.Count); err != nil {
				return err
			}
			c.State = TaskState(state)
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("queue: count tasks for the dashboard: %w", err)
	}
	return out, nil
}

// FinishedCount is how many tasks of one name reached one final state in
// one minute.
type FinishedCount struct {
	Minute time.Time
	Name   string
	State  TaskState
	Count  int
}

// DashboardFinished counts the tasks that reached a final state in each
// minute from the minute of since on, up to until (zero: up to now), per
// name and state, and returns the database's clock (minutes are the
// database's). Its cost grows with the tasks finished in that time: ask for
// the minutes not seen yet.
func (d *PostgresDriver) DashboardFinished(ctx context.Context, since, until time.Time) (counts []FinishedCount, now time.Time, err error) {
	err = d.dashboardRead(ctx, func(tx *sql.Tx) error {
		var at float64
		if err := tx.QueryRowContext(ctx, `SELECT date_part('epoch', now())`).Scan(&at); err != nil {
			return err
		}
		now = epochTime(at)
		rows, err := tx.QueryContext(ctx, d.names.render("dashboardFinished", `
SELECT date_part('epoch', date_trunc('minute', finished_at)), task_name, state, count(*)
FROM {{.Table}}
WHERE state IN ('DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')
	AND finished_at >= date_trunc('minute', $1::timestamptz) AND finished_at < coalesce($2::timestamptz, 'infinity')
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`), since, sql.NullTime{Time: until, Valid: !until.IsZero()})
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c FinishedCount
			var state string
			if err := rows.Scan(&at, &c.Name, &state, &c.Count); err != nil {
				return err
			}
			c.Minute, c.State = epochTime(at), TaskState(state)
			counts = append(counts, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("queue: finished tasks for the dashboard: %w", err)
	}
	return counts, now, nil
}

// DashboardOldestDue returns the first due pending task in queue order and
// how long it has been due; ok is false when no task is due.
func (d *PostgresDriver) DashboardOldestDue(ctx context.Context) (id int64, waiting time.Duration, ok bool, err error) {
	err = d.dashboardRead(ctx, func(tx *sql.Tx) error {
		var secs float64
		err := tx.QueryRowContext(ctx, d.names.render("dashboardOldestDue", `
SELECT id, date_part('epoch', now() - do_after) FROM {{.Table}}
WHERE state IN ('READY', 'RETRY') AND task_name IS NOT NULL AND do_after <= now()
ORDER BY id LIMIT 1`)).Scan(&id, &secs)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		ok, waiting = true, time.Duration(secs*float64(time.Second))
		return nil
	})
	if err != nil {
		return 0, 0, false, fmt.Errorf("queue: oldest due task: %w", err)
	}
	return id, waiting, ok, nil
}

// SupersedeChain says how a task relates to the other tasks of its key.
type SupersedeChain struct {
	// RanInstead follows SupersededBy from the task: the task that
	// superseded it first, then the one that superseded that one, and so on
	// (the first 10, then the chain's end: the task that ran or is to run,
	// if it is within 1,000 links).
	RanInstead []Task
	// Omitted counts the links of the chain left out of RanInstead after
	// the first 10; Unended says the chain goes on past 1,000 links, so
	// its end is not listed.
	Omitted int
	Unended bool
	// Superseded lists the tasks this one superseded, newest first (at most
	// 20; SupersededMore says whether there are more).
	Superseded     []Task
	SupersededMore bool
}

// DashboardSupersedeChain reads the supersede chain of task t.
func (d *PostgresDriver) DashboardSupersedeChain(ctx context.Context, t Task) (SupersedeChain, error) {
	var c SupersedeChain
	err := d.dashboardRead(ctx, func(tx *sql.Tx) error {
		// A key updated often while its task ran leaves a long chain (each
		// task added supersedes the one before it).
		var last Task
		for next, hops := t.SupersededBy, 0; next != 0; hops++ {
			if hops == 1000 {
				c.Unended = true
				break
			}
			err := scanTaskErrors(tx.QueryRowContext(ctx, d.q.get, next), &last)
			if errors.Is(err, sql.ErrNoRows) {
				break // removed by retention
			}
			if err != nil {
				return err
			}
			if hops < 10 || last.State != TaskSuperseded {
				c.RanInstead = append(c.RanInstead, last)
			} else {
				c.Omitted++
			}
			next = last.SupersededBy
		}
		branch := func(b string) string {
			return `(SELECT * FROM ` + d.names.Table + ` WHERE task_key = $1 AND ` + b +
				` AND id < $2 AND superseded_by = $2 ORDER BY id DESC LIMIT 21)`
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+taskColumns+` FROM (`+branch(startedFinished)+` UNION ALL `+
			branch(unstartedFinished)+`) s ORDER BY id DESC LIMIT 21`, t.Key, t.ID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var s Task
			if err := scanTask(rows, &s, nil); err != nil {
				return err
			}
			c.Superseded = append(c.Superseded, s)
		}
		if len(c.Superseded) > 20 {
			c.Superseded, c.SupersededMore = c.Superseded[:20], true
		}
		return rows.Err()
	})
	if err != nil {
		return SupersedeChain{}, fmt.Errorf("queue: supersede chain of task %d: %w", t.ID, err)
	}
	return c, nil
}

// DashboardLease returns the lease a task in flight is held under (its
// token and expiry); ok is false when the task holds none.
func (d *PostgresDriver) DashboardLease(ctx context.Context, id int64) (lease Lease, ok bool, err error) {
	var token sql.NullString
	var expires sql.NullFloat64
	err = d.db.QueryRowContext(ctx, `SELECT lease_token::text, date_part('epoch', lease_expires_at) FROM `+
		d.names.Table+` WHERE id = $1`, id).Scan(&token, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return Lease{}, false, fmt.Errorf("%w: id %d", ErrTaskNotFound, id)
	}
	if err != nil {
		return Lease{}, false, fmt.Errorf("queue: lease of task %d: %w", id, err)
	}
	if !token.Valid {
		return Lease{}, false, nil
	}
	lease = Lease{TaskID: id, Token: token.String}
	if expires.Valid {
		lease.Expires = epochTime(expires.Float64)
	}
	return lease, true, nil
}

// BulkAction is what a bulk change does to the tasks of a filter.
type BulkAction string

// The bulk actions of the dashboard.
const (
	// BulkRetry makes FAILED and CANCELLED tasks READY again (as RetryTask
	// does, task by task: never one older than a started task of its key).
	BulkRetry BulkAction = "retry"
	// BulkCancel cancels READY and RETRY tasks.
	BulkCancel BulkAction = "cancel"
)

// BulkPreview is what a bulk action would change: Count tasks, none newer
// than UpToID (a bulk action changes no task added after its preview).
type BulkPreview struct {
	Action BulkAction
	Count  int
	UpToID int64
}

// bulkAccess is the index predicate of the tasks a bulk action can change,
// and the states it changes.
func bulkAccess(action BulkAction, state TaskState) (access string, ok bool, err error) {
	switch action {
	case BulkRetry:
		if state != "" && state != TaskFailed && state != TaskCancelled {
			return "", false, nil
		}
		return `state IN ('FAILED', 'CANCELLED')`, true, nil
	case BulkCancel:
		if state != "" && state != TaskReady && state != TaskRetry {
			return "", false, nil
		}
		return `state IN ('READY', 'RETRY') AND task_name IS NOT NULL`, true, nil
	}
	return "", false, fmt.Errorf("%w: unknown bulk action %q", ErrInvalidFilter, action)
}

// bulkSelection renders f for a bulk action: the rows the action can change
// among those f matches, no newer than upTo (0: any).
func (d *PostgresDriver) bulkSelection(ctx context.Context, q queryer, action BulkAction, f TaskListFilter, upTo int64) (taskSelection, error) {
	access, ok, err := bulkAccess(action, f.State)
	if err != nil {
		return taskSelection{}, err
	}
	if !ok {
		return taskSelection{empty: true}, nil
	}
	f.BeforeID = 0
	if upTo > 0 {
		f.BeforeID = upTo + 1
	}
	// Pending and failed tasks are few next to finished ones: a key is
	// checked on them rather than looked up.
	sel, err := d.dashboardSelection(ctx, q, f, false)
	if err != nil || sel.empty {
		return sel, err
	}
	sel.branches[0] += " AND " + access
	return sel, nil
}

// DashboardBulkPreview counts the tasks of filter f that action would change.
func (d *PostgresDriver) DashboardBulkPreview(ctx context.Context, action BulkAction, f TaskListFilter) (BulkPreview, error) {
	f.Limit = 0
	if err := f.Validate(); err != nil {
		return BulkPreview{}, err
	}
	p := BulkPreview{Action: action}
	err := d.dashboardRead(ctx, func(tx *sql.Tx) error {
		sel, err := d.bulkSelection(ctx, tx, action, f, 0)
		if err != nil || sel.empty {
			return err
		}
		return tx.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*), coalesce(max(id), 0) FROM %s WHERE %s AND %s",
			d.names.Table, sel.branches[0], sel.filter), sel.args...).Scan(&p.Count, &p.UpToID)
	})
	if err != nil {
		return BulkPreview{}, fmt.Errorf("queue: preview bulk %s: %w", action, err)
	}
	return p, nil
}

// BulkResult is what a bulk action changed.
type BulkResult struct {
	Changed int // tasks retried or cancelled
	Skipped int // tasks that matched but could not be changed (see BulkRetry)
}

// DashboardBulkApply runs action on the tasks of filter f that are no newer
// than p.UpToID, in batches of a thousand, newest first. A task that left
// the states the action applies to since the preview is left alone.
func (d *PostgresDriver) DashboardBulkApply(ctx context.Context, p BulkPreview, f TaskListFilter, message string) (BulkResult, error) {
	f.Limit = 0
	if err := f.Validate(); err != nil {
		return BulkResult{}, err
	}
	if p.UpToID <= 0 {
		return BulkResult{}, nil
	}
	var res BulkResult
	cursor := p.UpToID
	for cursor > 0 {
		sel, err := d.bulkSelection(ctx, d.db, p.Action, f, cursor)
		if err != nil {
			return res, fmt.Errorf("queue: bulk %s: %w", p.Action, err)
		}
		if sel.empty {
			break
		}
		var change string
		switch p.Action {
		case BulkRetry:
			change = `
UPDATE {{.Table}} t
SET state = 'READY', attempts = 0, do_after = now(), finished_at = NULL,
	last_attempt_message = 'retried by request: ' || t.last_attempt_message
FROM batch
WHERE t.id = batch.id AND t.state IN ('FAILED', 'CANCELLED')
	AND NOT EXISTS (
		SELECT 1 FROM {{.Table}} n
		WHERE n.task_key = t.task_key AND n.id > t.id
			AND (n.attempts > 0 OR n.last_attempted > n.created_at)
			AND n.state <> 'IN PROGRESS')
	AND NOT EXISTS (
		SELECT 1 FROM {{.Table}} r
		WHERE r.task_key = t.task_key AND r.id > t.id AND r.state = 'IN PROGRESS')
RETURNING t.id`
		case BulkCancel:
			change = `
UPDATE {{.Table}} t
SET state = 'CANCELLED', finished_at = now(), last_attempt_message = ` + fmt.Sprintf("$%d", len(sel.args)+1) + `
FROM batch
WHERE t.id = batch.id AND t.state IN ('READY', 'RETRY')
RETURNING t.id`
			sel.args = append(sel.args, message)
		}
		stmt := d.names.render("bulk", fmt.Sprintf(`
WITH batch AS (
	SELECT id FROM {{.Table}} WHERE %s AND %s ORDER BY id DESC LIMIT %d FOR UPDATE SKIP LOCKED
), changed AS (%s)
SELECT (SELECT count(*) FROM batch), (SELECT coalesce(min(id), 0) FROM batch), (SELECT count(*) FROM changed)`,
			sel.branches[0], sel.filter, dashboardBatch, change))
		var batched, changed int
		var lowest int64
		if err := d.db.QueryRowContext(ctx, stmt, sel.args...).Scan(&batched, &lowest, &changed); err != nil {
			return res, fmt.Errorf("queue: bulk %s: %w", p.Action, err)
		}
		res.Changed += changed
		res.Skipped += batched - changed
		if batched < dashboardBatch {
			break
		}
		cursor = lowest - 1
	}
	return res, nil
}

// DashboardScheduleRun is the last firing of a schedule, as the schedule table
// records it.
type DashboardScheduleRun struct {
	Name        string
	LastStarted time.Time
	StartedBy   string
}

// DashboardSchedules lists the schedules that have fired on this queue.
func (d *PostgresDriver) DashboardSchedules(ctx context.Context) ([]DashboardScheduleRun, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT name, date_part('epoch', last_started), started_by FROM `+
		d.names.QObj("schedule")+` ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("queue: list schedules: %w", err)
	}
	defer rows.Close()
	var out []DashboardScheduleRun
	for rows.Next() {
		var s DashboardScheduleRun
		var at float64
		if err := rows.Scan(&s.Name, &at, &s.StartedBy); err != nil {
			return nil, fmt.Errorf("queue: list schedules: %w", err)
		}
		s.LastStarted = epochTime(at)
		out = append(out, s)
	}
	return out, rows.Err()
}

// DashboardCDCController is what cdc_hash holds for one CDC controller.
type DashboardCDCController struct {
	ID          string
	Name        string    // "" for a controller of the original esync, never run by this version
	HashVersion string    // how its hashes are computed
	UpdatedAt   time.Time // when its hashing was last recorded
	Tracked     int       // objects whose synced hash is stored
	Pending     int       // changes emitted and not yet confirmed downstream
}

// DashboardCDCControllers lists the CDC controllers of the schema: those
// with rows in cdc_hash (found by walking its index one controller at a
// time) and those registered without rows yet.
func (d *PostgresDriver) DashboardCDCControllers(ctx context.Context) ([]DashboardCDCController, error) {
	var out []DashboardCDCController
	err := d.dashboardRead(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, d.names.render("dashboardCDC", `
WITH RECURSIVE hashed AS (
	(SELECT cdc_controller_id AS id FROM {{.CDC}} ORDER BY 1 LIMIT 1)
	UNION ALL
	SELECT (SELECT h.cdc_controller_id FROM {{.CDC}} h WHERE h.cdc_controller_id > hashed.id ORDER BY 1 LIMIT 1)
	FROM hashed WHERE hashed.id IS NOT NULL
), ids AS (
	SELECT id FROM hashed WHERE id IS NOT NULL
	UNION
	SELECT cdc_controller_id FROM {{.Schema}}.cdc_controller
)
SELECT ids.id::text, coalesce(c.name, ''), coalesce(c.hash_version, ''), coalesce(date_part('epoch', c.updated_at), 0),
	(SELECT count(*) FROM {{.CDC}} h WHERE h.cdc_controller_id = ids.id AND h.row_hash IS NOT NULL),
	(SELECT count(*) FROM {{.CDC}} h WHERE h.cdc_controller_id = ids.id AND h.pending_hash IS NOT NULL)
FROM ids LEFT JOIN {{.Schema}}.cdc_controller c ON c.cdc_controller_id = ids.id
ORDER BY 2, 1`))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c DashboardCDCController
			var at float64
			if err := rows.Scan(&c.ID, &c.Name, &c.HashVersion, &at, &c.Tracked, &c.Pending); err != nil {
				return err
			}
			if at > 0 {
				c.UpdatedAt = epochTime(at)
			}
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("queue: list CDC controllers: %w", err)
	}
	return out, nil
}

// DashboardRunningByName counts the tasks in flight per task name.
func (d *PostgresDriver) DashboardRunningByName(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	err := d.dashboardRead(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT task_name, count(*) FROM `+d.names.Table+
			` WHERE state = 'IN PROGRESS' GROUP BY 1`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var name string
			var n int
			if err := rows.Scan(&name, &n); err != nil {
				return err
			}
			out[name] = n
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("queue: running tasks per name: %w", err)
	}
	return out, nil
}

// The dashboard shows the following when the driver can say (the methods
// named in package web's capability interfaces). They are what a process
// registry, stream controls and schedule bookkeeping know; this file only
// names their shapes.

// DashboardProcess is one running process of the queue, as a registry
// knows it.
type DashboardProcess struct {
	ID        string
	Host      string
	PID       int
	Names     []string // task names it handles
	Streams   []string // streams it runs
	Started   time.Time
	Heartbeat time.Time // last sign of life
}

// DashboardStream is one stream as the processes running it report it.
type DashboardStream struct {
	Name        string
	Concurrency int
	Running     int
	Paused      bool
	Exclusive   bool
	RateLimit   string // "" when the stream has none
	Names       []string
}

// DashboardSchedule is what is known of one schedule's spec and firings.
type DashboardSchedule struct {
	Name       string
	Spec       string // interval or cron spec
	Stream     string
	LastFired  time.Time
	LastResult string // "" until it has fired
	NextFiring time.Time
}

// DashboardProcesses lists the processes of the registry for the
// dashboard.
func (d *PostgresDriver) DashboardProcesses(ctx context.Context) ([]DashboardProcess, error) {
	ps, err := d.ListProcesses(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]DashboardProcess, 0, len(ps))
	for _, p := range ps {
		if !p.Live {
			continue
		}
		out = append(out, DashboardProcess{ID: p.ID, Host: p.Host, PID: p.PID, Names: p.TaskNames, Streams: p.Streams,
			Started: p.Started, Heartbeat: p.LastHeartbeat})
	}
	return out, nil
}

// DashboardStreams lists the streams the live processes of the registry
// run, and the paused ones, with the task names run in each (as far as
// the registry tells: a process lists its names and streams, not which
// name runs in which stream when it has several).
func (d *PostgresDriver) DashboardStreams(ctx context.Context) ([]DashboardStream, error) {
	ps, err := d.ListProcesses(ctx)
	if err != nil {
		return nil, err
	}
	paused, err := d.PausedStreams(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]*DashboardStream{}
	add := func(name string) *DashboardStream {
		s, ok := byName[name]
		if !ok {
			s = &DashboardStream{Name: name}
			byName[name] = s
		}
		return s
	}
	for _, p := range ps {
		if !p.Live {
			continue
		}
		for _, st := range p.Streams {
			s := add(st)
			if len(p.Streams) == 1 {
				s.Names = appendNew(s.Names, p.TaskNames...)
			}
		}
	}
	for _, p := range paused {
		add(p.Stream).Paused = true
	}
	out := make([]DashboardStream, 0, len(byName))
	for _, s := range byName {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// appendNew appends the values not in list yet.
func appendNew(list []string, values ...string) []string {
	for _, v := range values {
		if !slices.Contains(list, v) {
			list = append(list, v)
		}
	}
	return list
}
