package queue

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"net"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
)

// Defaults for the queue's location in the database.
const (
	DefaultSchema = "public"
	DefaultTable  = "message_queue"
	// CDCTable is the name of the CDC hash table, beside the queue table.
	CDCTable = "cdc_hash"
	// DefaultMaxAttempts is how many runs a task may start unless told.
	DefaultMaxAttempts = 25
)

// PostgresOption configures a PostgresDriver.
type PostgresOption func(*postgresConfig)

type postgresConfig struct {
	schema         string
	table          string
	notify         bool
	prepare        bool
	listenDSN      string
	pooler         bool
	exclusiveLease time.Duration
}

// newPostgresConfig applies opts to the defaults.
func newPostgresConfig(opts []PostgresOption) postgresConfig {
	cfg := postgresConfig{schema: DefaultSchema, table: DefaultTable, notify: true, prepare: true,
		exclusiveLease: DefaultExclusiveLease}
	for _, opt := range opts {
		opt(&cfg)
	}
	return cfg
}

// WithSchema places the queue in the given schema (default "public").
func WithSchema(name string) PostgresOption {
	return func(c *postgresConfig) { c.schema = name }
}

// WithTable names the queue table (default "message_queue").
func WithTable(name string) PostgresOption {
	return func(c *postgresConfig) { c.table = name }
}

// WithNotify turns the NOTIFY sent on every insert on or off (default on).
// Turn it off behind a transaction-pooling PgBouncer, where LISTEN cannot
// work; workers then find new tasks by polling.
func WithNotify(on bool) PostgresOption {
	return func(c *postgresConfig) { c.notify = on }
}

// PostgresDriver keeps the queue in PostgreSQL through database/sql and
// github.com/lib/pq. It is safe for concurrent use.
type PostgresDriver struct {
	db        *sql.DB
	ownsDB    bool
	dsn       string // for LISTEN connections; never logged
	listenDSN string
	schema    string
	table     string
	channel   string
	// controlChannel carries pause, resume and cancel announcements.
	controlChannel string
	notify         bool
	names          sqlNames
	q              postgresQueries
	stmts          *preparedStatements
	// pooler: behind a transaction-pooling PgBouncer (WithPooler).
	pooler         bool
	exclusiveLease time.Duration
	// oneRoundTrip: the *sql.DB was found to bind in one round trip (see
	// requireOneRoundTrip).
	oneRoundTrip atomic.Bool
	// claimWalks: where each claim's walk of the queue starts.
	claimWalks claimWalks
	// wakeups announces tasks added outside a caller's transaction while
	// other adds are under way; addsInFlight counts those adds.
	wakeups      *wakeups
	addsInFlight atomic.Int64
}

// OpenPostgres connects to the database at dsn (a URL or key=value string
// as lib/pq accepts). It does not create tables: call Migrate.
func OpenPostgres(dsn string, opts ...PostgresOption) (*PostgresDriver, error) {
	connectDSN := dsn
	if newPostgresConfig(opts).pooler {
		connectDSN = withOneRoundTripBinding(dsn)
	}
	connector, err := pq.NewConnector(connectDSN)
	if err != nil {
		if _, perr := url.Parse(dsn); perr != nil && strings.Contains(dsn, "://") {
			// url.Parse quotes the whole URL, password included, and the
			// password of a URL that does not parse cannot be found to
			// redact it: say what is wrong without the text.
			return nil, errors.New("queue: parse connection string: malformed URL (not shown: it may hold a password)")
		}
		return nil, fmt.Errorf("queue: parse connection string: %s", redactSecrets(err.Error(), dsn))
	}
	db := sql.OpenDB(redactingConnector{connector: connector, dsn: dsn})
	d, err := newPostgresDriver(db, opts)
	if err != nil {
		db.Close()
		return nil, err
	}
	d.ownsDB = true
	d.dsn = dsn
	return d, nil
}

// NewPostgresDriverFromDB uses a *sql.DB the caller opened (with lib/pq) and
// keeps owning: Close does not close it. It does not create tables: call
// Migrate.
func NewPostgresDriverFromDB(db *sql.DB, opts ...PostgresOption) (*PostgresDriver, error) {
	if db == nil {
		return nil, errors.New("queue: nil *sql.DB")
	}
	return newPostgresDriver(db, opts)
}

// NewPostgresDriver is the original constructor: it connects with the given
// credentials (host may carry a ":port"), uses the given table in schema
// public ("" means message_queue) and, as the original did, returns a driver
// that is ready to use: it runs Migrate before returning.
func NewPostgresDriver(user, pass, host, dbname, table string) (*PostgresDriver, error) {
	if table == "" {
		table = DefaultTable
	}
	port := ""
	if h, p, err := net.SplitHostPort(host); err == nil {
		host, port = h, p
	}
	parts := []string{
		"user=" + quoteDSNValue(user),
		"password=" + quoteDSNValue(pass),
		"host=" + quoteDSNValue(host),
		"dbname=" + quoteDSNValue(dbname),
	}
	if port != "" {
		parts = append(parts, "port="+quoteDSNValue(port))
	}
	if os.Getenv("PGSSLMODE") == "" {
		parts = append(parts, "sslmode=prefer")
	}
	d, err := OpenPostgres(strings.Join(parts, " "), WithTable(table))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.Migrate(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func newPostgresDriver(db *sql.DB, opts []PostgresOption) (*PostgresDriver, error) {
	cfg := newPostgresConfig(opts)
	if cfg.pooler {
		cfg = cfg.forPooler()
	}
	if cfg.exclusiveLease < minExclusiveLease {
		return nil, fmt.Errorf("queue: WithExclusiveLease(%s): must be at least %s", cfg.exclusiveLease, minExclusiveLease)
	}
	if err := validateIdentifier("schema", cfg.schema); err != nil {
		return nil, err
	}
	if err := validateIdentifier("table", cfg.table); err != nil {
		return nil, err
	}
	names := newSQLNames(cfg.schema, cfg.table)
	channel := notifyChannel(cfg.schema, cfg.table)
	return &PostgresDriver{
		db:             db,
		schema:         cfg.schema,
		table:          cfg.table,
		channel:        channel,
		wakeups:        newWakeups(db, channel),
		controlChannel: notifyChannel(cfg.schema, cfg.table+"!control"),
		notify:         cfg.notify,
		listenDSN:      cfg.listenDSN,
		names:          names,
		q:              renderQueries(names),
		stmts:          &preparedStatements{db: db, on: cfg.prepare},
		pooler:         cfg.pooler,
		exclusiveLease: cfg.exclusiveLease,
	}, nil
}

// DB returns the underlying database handle.
func (d *PostgresDriver) DB() *sql.DB { return d.db }

// Schema returns the schema that holds the queue.
func (d *PostgresDriver) Schema() string { return d.schema }

// Table returns the name of the queue table.
func (d *PostgresDriver) Table() string { return d.table }

// Channel returns the LISTEN/NOTIFY channel on which inserts are announced;
// the payload is the task name.
func (d *PostgresDriver) Channel() string { return d.channel }

// Close closes the database handle if the driver opened it.
func (d *PostgresDriver) Close() error {
	d.wakeups.close()
	d.stmts.close()
	if d.ownsDB {
		return d.db.Close()
	}
	return nil
}

// notifyChannel derives a channel name no longer than PostgreSQL allows.
func notifyChannel(schema, table string) string {
	ch := "esync:" + schema + "." + table
	if len(ch) > 63 {
		ch = fmt.Sprintf("esync:%08x:%s", crc32.ChecksumIEEE([]byte(schema+"."+table)), table)
	}
	return ch
}

// AddTasks inserts tasks in one statement and announces them on the
// driver's channel (once per task name) unless notifications are off: at
// the commit of tx or of the insert; but when other adds of this driver are
// under way, right after the insert commits, in a transaction of its own
// (see wakeups).
func (d *PostgresDriver) AddTasks(ctx context.Context, tx *sql.Tx, tasks []NewTask) ([]int64, error) {
	if len(tasks) == 0 {
		return nil, nil
	}
	n := len(tasks)
	names, keys, datas, by := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	delays, maxAttempts := make([]float64, n), make([]int64, n)
	for i, t := range tasks {
		if err := t.validate(); err != nil {
			return nil, fmt.Errorf("task %d: %w", i, err)
		}
		names[i], keys[i], datas[i], by[i] = t.Name, t.Key, string(t.Data), t.CreatedBy
		delays[i] = t.Delay.Seconds()
		maxAttempts[i] = int64(t.MaxAttempts)
		if maxAttempts[i] == 0 {
			maxAttempts[i] = DefaultMaxAttempts
		}
	}
	// Alone, an add announces its tasks at its commit, as one in a
	// caller's transaction does; beside other adds of this driver, after
	// its commit (see wakeups).
	alone := d.addsInFlight.Add(1) == 1
	defer d.addsInFlight.Add(-1)
	announceAfter := d.notify && tx == nil && !alone
	channel := ""
	if d.notify && !announceAfter {
		channel = d.channel
	}
	var ids []int64
	args := []any{pq.Array(names), pq.Array(keys), pq.Array(datas), pq.Array(by),
		pq.Array(delays), pq.Array(maxAttempts), channel}
	insert := d.q.insert
	if n > 1 && distinct(keys) {
		insert = d.q.insertDistinct
	}
	var row *sql.Row
	if tx != nil {
		// The caller's transaction may come from another *sql.DB, where
		// the driver's statements are not prepared.
		row = tx.QueryRowContext(ctx, insert, args...)
	} else {
		row = d.stmts.queryRow(ctx, insert, args...)
	}
	err := row.Scan(pq.Array(&ids))
	if err != nil {
		return nil, fmt.Errorf("queue: add tasks: %w", err)
	}
	if announceAfter {
		d.wakeups.announce(names)
	}
	return ids, nil
}

// Claim runs the claim function created by Migrate: one round trip, one
// short transaction, no lock held after it returns.
func (d *PostgresDriver) Claim(ctx context.Context, p ClaimParams) ([]ClaimedTask, error) {
	if len(p.Names) == 0 || p.Limit <= 0 {
		return nil, nil
	}
	if p.Lease <= 0 {
		return nil, errors.New("queue: claim needs a positive lease")
	}
	if err := d.requireOneRoundTrip(ctx); err != nil {
		return nil, err
	}
	var fenceName, fenceToken string
	if l := p.Exclusive; l != nil {
		fenceName, fenceToken = l.name, l.token
	}
	walk, from := d.claimWalks.start(p.Names)
	rows, err := d.stmts.query(ctx, d.q.claim, pq.Array(p.Names), p.Limit, p.Lease.Seconds(), p.Stream, from, fenceName, fenceToken)
	if err != nil {
		return nil, fmt.Errorf("queue: claim: %w", err)
	}
	defer rows.Close()
	// Room for a usual claim up front: growing the slice copies every task.
	out := make([]ClaimedTask, 0, min(p.Limit, 512))
	var first float64
	for rows.Next() {
		out = append(out, ClaimedTask{})
		c := &out[len(out)-1]
		if err := scanTask(rows, &c.Task, &c.Lease, &first); err != nil {
			return nil, fmt.Errorf("queue: claim: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("queue: claim: %w", err)
	}
	if len(out) > 0 {
		d.claimWalks.found(walk, first)
	} else if p.Exclusive != nil {
		return nil, p.Exclusive.confirm(ctx)
	}
	return out, nil
}

// Finish applies completions in one statement, each fenced by its lease
// token: a completion from a worker that lost its lease changes nothing.
func (d *PostgresDriver) Finish(ctx context.Context, completions []Completion) ([]int64, error) {
	if len(completions) == 0 {
		return nil, nil
	}
	n := len(completions)
	ids, tokens, states, messages := make([]int64, n), make([]string, n), make([]string, n), make([]string, n)
	delays := make([]float64, n)
	for i, c := range completions {
		switch c.State {
		case TaskDone, TaskRetry, TaskFailed, TaskCancelled, TaskReady:
		default:
			return nil, fmt.Errorf("queue: finish task %d: state %q is not DONE, RETRY, FAILED, CANCELLED or READY", c.Lease.TaskID, c.State)
		}
		ids[i], tokens[i], states[i], messages[i] = c.Lease.TaskID, c.Lease.Token, string(c.State), c.Message
		delays[i] = c.Delay.Seconds()
	}
	rows, err := d.stmts.query(ctx, d.q.finish,
		pq.Array(ids), pq.Array(tokens), pq.Array(states), pq.Array(messages), pq.Array(delays))
	if err != nil {
		return nil, fmt.Errorf("queue: finish: %w", err)
	}
	return readIDs(rows)
}

// distinct reports whether no key appears twice in keys.
func distinct(keys []string) bool {
	seen := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if _, dup := seen[k]; dup {
			return false
		}
		seen[k] = struct{}{}
	}
	return true
}

// ExtendLeases pushes the expiry of held leases to now plus dur.
func (d *PostgresDriver) ExtendLeases(ctx context.Context, leases []Lease, dur time.Duration) ([]int64, error) {
	if len(leases) == 0 {
		return nil, nil
	}
	ids, tokens := make([]int64, len(leases)), make([]string, len(leases))
	for i, l := range leases {
		ids[i], tokens[i] = l.TaskID, l.Token
	}
	rows, err := d.stmts.query(ctx, d.q.extend, pq.Array(ids), pq.Array(tokens), dur.Seconds())
	if err != nil {
		return nil, fmt.Errorf("queue: extend leases: %w", err)
	}
	return readIDs(rows)
}

// CancelRequested returns those of ids whose cancellation an operator
// requested while they run (see CancelTask).
func (d *PostgresDriver) CancelRequested(ctx context.Context, ids []int64) ([]int64, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := d.stmts.query(ctx, d.q.cancelRequested, pq.Array(ids))
	if err != nil {
		return nil, fmt.Errorf("queue: cancel requests: %w", err)
	}
	return readIDs(rows)
}

// readIDs reads the IDs a statement returned: the ones it could not write.
func readIDs(rows *sql.Rows) ([]int64, error) {
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// RescueExpired returns tasks with an expired lease to RETRY, due after
// p.Backoff's wait for their name and attempt, or to FAILED when they have
// used up their attempts.
func (d *PostgresDriver) RescueExpired(ctx context.Context, p RescueParams) (int, error) {
	if p.Limit <= 0 {
		p.Limit = 1000
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("queue: rescue expired leases: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, d.q.rescueSelect, p.Limit, p.RestartGrace.Seconds())
	if err != nil {
		return 0, fmt.Errorf("queue: rescue expired leases: %w", err)
	}
	var ids []int64
	var delays []float64
	for rows.Next() {
		var id int64
		var name string
		var attempt int
		if err := rows.Scan(&id, &name, &attempt); err != nil {
			rows.Close()
			return 0, fmt.Errorf("queue: rescue expired leases: %w", err)
		}
		var delay time.Duration
		if p.Backoff != nil {
			delay = min(max(p.Backoff(name, attempt), 0), 365*24*time.Hour)
		}
		ids, delays = append(ids, id), append(delays, delay.Seconds())
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("queue: rescue expired leases: %w", err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	res, err := tx.ExecContext(ctx, d.q.rescue, pq.Array(ids), pq.Array(delays))
	if err != nil {
		return 0, fmt.Errorf("queue: rescue expired leases: %w", err)
	}
	n, _ := res.RowsAffected()
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("queue: rescue expired leases: %w", err)
	}
	return int(n), nil
}

// DeleteFinished removes up to limit tasks that reached a final state before
// the given time.
func (d *PostgresDriver) DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		limit = 1000
	}
	return d.execCount(ctx, "delete finished tasks", d.q.deleteFinished, before, limit)
}

func (d *PostgresDriver) execCount(ctx context.Context, what, query string, args ...any) (int, error) {
	res, err := d.db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("queue: %s: %w", what, err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// GetTask reads one task.
func (d *PostgresDriver) GetTask(ctx context.Context, id int64) (Task, error) {
	var t Task
	err := scanTaskErrors(d.db.QueryRowContext(ctx, d.q.get, id), &t)
	if errors.Is(err, sql.ErrNoRows) {
		return Task{}, fmt.Errorf("%w: id %d", ErrTaskNotFound, id)
	}
	if err != nil {
		return Task{}, fmt.Errorf("queue: get task %d: %w", id, err)
	}
	return t, nil
}

// ListTasks reads tasks matching f in ID order, or newest first with f.NewestFirst.
func (d *PostgresDriver) ListTasks(ctx context.Context, f TaskFilter) ([]Task, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	query, bound := d.q.list, f.AfterID
	if f.NewestFirst {
		query, bound = d.q.listNewest, f.BeforeID
	}
	rows, err := d.db.QueryContext(ctx, query, f.Name, f.Key, pq.Array(stateStrings(f.States)), bound, limit)
	if err != nil {
		return nil, fmt.Errorf("queue: list tasks: %w", err)
	}
	defer rows.Close()
	var out []Task
	for rows.Next() {
		var t Task
		if err := scanTask(rows, &t, nil); err != nil {
			return nil, fmt.Errorf("queue: list tasks: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// CountTasks counts tasks matching f.
func (d *PostgresDriver) CountTasks(ctx context.Context, f TaskFilter) (int, error) {
	var n int
	err := d.db.QueryRowContext(ctx, d.q.count, f.Name, f.Key, pq.Array(stateStrings(f.States))).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("queue: count tasks: %w", err)
	}
	return n, nil
}

// CountByState counts the tasks with name (any name if empty) per state.
func (d *PostgresDriver) CountByState(ctx context.Context, name string) (map[TaskState]int, error) {
	rows, err := d.db.QueryContext(ctx, d.q.countByState, name)
	if err != nil {
		return nil, fmt.Errorf("queue: count by state: %w", err)
	}
	defer rows.Close()
	out := map[TaskState]int{}
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			return nil, err
		}
		out[TaskState(state)] = n
	}
	return out, rows.Err()
}

// CancelTask cancels one pending (READY or RETRY) task at once. For a task
// IN PROGRESS it requests the cancellation: the process running it cancels
// the action's context (told at once by NOTIFY, or by its next lease
// extension), and the task ends CANCELLED unless the action succeeds.
func (d *PostgresDriver) CancelTask(ctx context.Context, id int64, message string) error {
	var pending, running int
	if err := d.db.QueryRowContext(ctx, d.q.cancel, id, message, d.controlChannel).Scan(&pending, &running); err != nil {
		return fmt.Errorf("queue: cancel task %d: %w", id, err)
	}
	if pending+running == 1 {
		return nil
	}
	t, err := d.GetTask(ctx, id)
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: task %d is %s", ErrNotCancellable, id, t.State)
}

// CancelKey cancels every pending task of key.
func (d *PostgresDriver) CancelKey(ctx context.Context, key, message string) (int, error) {
	return d.execCount(ctx, "cancel key", d.q.cancelKey, key, message)
}

// RetryTask makes a FAILED or CANCELLED task READY again with fresh
// attempts. It refuses when a newer task for the same key has started since:
// running the older payload then would move the object back in time.
func (d *PostgresDriver) RetryTask(ctx context.Context, id int64) error {
	n, err := d.execCount(ctx, "retry task", d.q.retry, id)
	if err != nil || n == 1 {
		return err
	}
	t, err := d.GetTask(ctx, id)
	if err != nil {
		return err
	}
	if t.State != TaskFailed && t.State != TaskCancelled {
		return fmt.Errorf("%w: task %d is %s", ErrNotRetryable, id, t.State)
	}
	return fmt.Errorf("%w: a newer task for key %q has started since task %d", ErrNotRetryable, t.Key, id)
}

// rowScanner is what *sql.Row and *sql.Rows have in common.
type rowScanner interface{ Scan(dest ...any) error }

// taskColumns lists, in scanTask's order, the columns read for a Task.
// Times come as seconds since the epoch (float8, exact to the microsecond
// for centuries around now): a number is cheaper to print and to parse than
// a timestamp's text, which counted for a tenth of a claim's Go time.
const taskColumns = `id, task_key, task_name, date_part('epoch', coalesce(created_at, last_attempted)), created_by, state,
	data, attempts, max_attempts, date_part('epoch', do_after), date_part('epoch', last_attempted), last_attempt_message,
	coalesce(superseded_by, 0), date_part('epoch', finished_at), lease_token::text, date_part('epoch', lease_expires_at)`

// scanTask reads a row of taskColumns into t, and the lease into lease if
// it is not nil; columns after taskColumns go into more.
func scanTask(r rowScanner, t *Task, lease *Lease, more ...any) error {
	var state string
	var created, runAfter, attempted float64
	var finished, leaseExpires sql.NullFloat64
	var token sql.NullString
	dest := []any{&t.ID, &t.Key, &t.Name, &created, &t.CreatedBy, &state,
		&t.RawData, &t.Attempt, &t.MaxAttempts, &runAfter, &attempted, &t.Message,
		&t.SupersededBy, &finished, &token, &leaseExpires}
	if err := r.Scan(append(dest, more...)...); err != nil {
		return err
	}
	t.Created, t.RunAfter, t.LastAttempted = epochTime(created), epochTime(runAfter), epochTime(attempted)
	t.FinishedAt = time.Time{}
	if finished.Valid {
		t.FinishedAt = epochTime(finished.Float64)
	}
	if lease != nil {
		*lease = Lease{TaskID: t.ID, Token: token.String}
		if leaseExpires.Valid {
			lease.Expires = epochTime(leaseExpires.Float64)
		}
	}
	t.State = TaskState(state)
	t.Data = nil
	if len(t.RawData) > 0 && t.RawData[0] == '{' {
		if err := json.Unmarshal(t.RawData, &t.Data); err != nil {
			return fmt.Errorf("task %d: decode data: %w", t.ID, err)
		}
	}
	return nil
}

// scanTaskErrors reads a row of the get statement (taskColumns, then the
// errors) into t.
func scanTaskErrors(r rowScanner, t *Task) error {
	var errs []byte
	if err := scanTask(r, t, nil, &errs); err != nil {
		return err
	}
	t.Errors = nil
	if errs != nil {
		if err := json.Unmarshal(errs, &t.Errors); err != nil {
			return fmt.Errorf("task %d: decode errors: %w", t.ID, err)
		}
	}
	return nil
}

// epochTime turns seconds since the epoch, as PostgreSQL's date_part gives
// them, back into a time, rounded to PostgreSQL's microseconds.
func epochTime(seconds float64) time.Time {
	return time.UnixMicro(int64(math.Round(seconds * 1e6)))
}

func stateStrings(states []TaskState) []string {
	out := make([]string, len(states))
	for i, s := range states {
		out[i] = string(s)
	}
	return out
}
