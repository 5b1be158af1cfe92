package queue_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// testBundle is what most tests work with: a migrated queue on a database of
// their own.
type testBundle struct {
	ctx    context.Context
	driver *queue.PostgresDriver
	db     *sql.DB
	tm     *queue.TaskManager
	dsn    string
	table  string // quoted schema.table, for plain SQL
}

// setup gives the test a fresh database with a migrated queue.
func setup(t *testing.T, opts ...queue.PostgresOption) *testBundle {
	t.Helper()
	dsn := queuetest.NewDSN(t)
	d, err := queue.OpenPostgres(dsn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return &testBundle{
		ctx:    ctx,
		driver: d,
		db:     d.DB(),
		tm:     queue.NewTaskManager(d),
		dsn:    dsn,
		table:  pq.QuoteIdentifier(d.Schema()) + "." + pq.QuoteIdentifier(d.Table()),
	}
}

// add adds one task and returns its ID.
func (b *testBundle) add(t *testing.T, name, key string, data any, opts ...queue.AddOption) int64 {
	t.Helper()
	id, err := b.tm.Add(b.ctx, name, key, data, opts...)
	if err != nil {
		t.Fatalf("add %s/%s: %v", name, key, err)
	}
	return id
}

// claim claims up to limit tasks of the given names (default "job") under a
// 30s lease.
func (b *testBundle) claim(t *testing.T, limit int, names ...string) []queue.ClaimedTask {
	t.Helper()
	return b.claimLease(t, limit, 30*time.Second, names...)
}

func (b *testBundle) claimLease(t *testing.T, limit int, lease time.Duration, names ...string) []queue.ClaimedTask {
	t.Helper()
	if len(names) == 0 {
		names = []string{"job"}
	}
	got, err := b.driver.Claim(b.ctx, queue.ClaimParams{Names: names, Limit: limit, Lease: lease})
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return got
}

// claimOne claims exactly one task and fails the test otherwise.
func (b *testBundle) claimOne(t *testing.T, names ...string) queue.ClaimedTask {
	t.Helper()
	got := b.claim(t, 1, names...)
	if len(got) != 1 {
		t.Fatalf("claim: got %d tasks %v, want 1", len(got), claimedIDs(got))
	}
	return got[0]
}

// finish records one outcome and fails the test if the lease was lost.
func (b *testBundle) finish(t *testing.T, c queue.ClaimedTask, state queue.TaskState, delay time.Duration) {
	t.Helper()
	lost, err := b.driver.Finish(b.ctx, []queue.Completion{{Lease: c.Lease, State: state, Message: "test", Delay: delay}})
	if err != nil {
		t.Fatalf("finish %d: %v", c.ID, err)
	}
	if len(lost) != 0 {
		t.Fatalf("finish %d: lease reported lost: %v", c.ID, lost)
	}
}

// row is a task's stored columns, read with plain SQL.
type row struct {
	ID           int64
	Key          string
	Name         string
	State        string
	Data         string
	Attempts     int
	MaxAttempts  int
	SupersededBy sql.NullInt64
	LeaseToken   sql.NullString
	LeaseExpires sql.NullTime
	FinishedAt   sql.NullTime
	DoAfter      time.Time
	CreatedBy    string
	Message      string
}

const rowColumns = `id, task_key, task_name, state, data::text, attempts, max_attempts, superseded_by,
	lease_token::text, lease_expires_at, finished_at, do_after, created_by, last_attempt_message`

func scanRow(s interface{ Scan(...any) error }) (row, error) {
	var r row
	err := s.Scan(&r.ID, &r.Key, &r.Name, &r.State, &r.Data, &r.Attempts, &r.MaxAttempts, &r.SupersededBy,
		&r.LeaseToken, &r.LeaseExpires, &r.FinishedAt, &r.DoAfter, &r.CreatedBy, &r.Message)
	return r, err
}

// row reads one task straight from the table.
func (b *testBundle) row(t *testing.T, id int64) row {
	t.Helper()
	r, err := scanRow(b.db.QueryRowContext(b.ctx, `SELECT `+rowColumns+` FROM `+b.table+` WHERE id = $1`, id))
	if err != nil {
		t.Fatalf("read task %d: %v", id, err)
	}
	return r
}

// rows reads every task in ID order.
func (b *testBundle) rows(t *testing.T) []row {
	t.Helper()
	rs, err := b.db.QueryContext(b.ctx, `SELECT `+rowColumns+` FROM `+b.table+` ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		r, err := scanRow(rs)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// state reads one task's stored state.
func (b *testBundle) state(t *testing.T, id int64) string {
	t.Helper()
	return b.row(t, id).State
}

// requireState fails unless each task has the wanted state.
func (b *testBundle) requireState(t *testing.T, want queue.TaskState, ids ...int64) {
	t.Helper()
	for _, id := range ids {
		if got := b.state(t, id); got != string(want) {
			t.Fatalf("task %d: state %q, want %q", id, got, want)
		}
	}
}

// count runs a count query with plain SQL; %s in query is the table.
func (b *testBundle) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := b.db.QueryRowContext(b.ctx, fmt.Sprintf(query, b.table), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// eventually polls cond every 50ms until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// requireErrorIs fails unless errors.Is(err, target).
func requireErrorIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want errors.Is %v", err, target)
	}
}

func requireNoError(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func claimedIDs(cs []queue.ClaimedTask) []int64 {
	ids := make([]int64, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return ids
}

// tableExists reports whether schema.table exists in db.
func tableExists(t *testing.T, ctx context.Context, db *sql.DB, schema, table string) bool {
	t.Helper()
	var ok bool
	err := db.QueryRowContext(ctx, `SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL`, schema, table).Scan(&ok)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// exampleDatabase creates a database on the test process's PostgreSQL for
// an Example (which has no *testing.T) and returns its connection string
// and a function that drops it.
func exampleDatabase(ctx context.Context) (dsn string, drop func()) {
	srv, err := queuetest.Shared()
	if err != nil {
		log.Fatal(err)
	}
	name, dsn, err := srv.CreateDatabase(ctx)
	if err != nil {
		log.Fatal(err)
	}
	return dsn, func() { srv.DropDatabase(context.Background(), name) }
}

// exampleDriver opens and migrates a queue on a fresh example database; done
// closes and drops it.
func exampleDriver(ctx context.Context) (driver *queue.PostgresDriver, done func()) {
	dsn, drop := exampleDatabase(ctx)
	driver, err := queue.OpenPostgres(dsn)
	if err != nil {
		log.Fatal(err)
	}
	if err := driver.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	return driver, func() { driver.Close(); drop() }
}
