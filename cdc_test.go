package queue_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// cdcSetup is a driver on a fresh database with a customer table.
type cdcSetup struct {
	d   *queue.PostgresDriver
	db  *sql.DB
	tm  *queue.TaskManager
	ctx context.Context
}

func newCDCSetup(t *testing.T) cdcSetup {
	t.Helper()
	d := queuetest.NewDriver(t)
	s := cdcSetup{d: d, db: d.DB(), tm: queue.NewTaskManager(d), ctx: context.Background()}
	s.exec(t, `CREATE TABLE customer (id int PRIMARY KEY, name text, email text, score float8, seen timestamptz)`)
	return s
}

func (s cdcSetup) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	if _, err := s.db.ExecContext(s.ctx, q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

const customerSource = `SELECT id AS object_id, name, email, score, seen FROM customer`

var cdcTaskNames = queue.CDCTasks{Create: "c.create", Update: "c.update", Delete: "c.delete", IncludeRow: true}

func (s cdcSetup) taskRunner(t *testing.T, name, source string, opts ...queue.CDCOption) *queue.CDCRunnerAction {
	t.Helper()
	r, err := queue.NewCDCRunner(s.d, name, queue.TrackColumns(source), cdcTaskNames, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (s cdcSetup) run(t *testing.T, r *queue.CDCRunnerAction) int {
	t.Helper()
	n, err := r.Run(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pendingActions lists "action:object" of unfinished tasks, sorted.
func (s cdcSetup) pendingActions(t *testing.T) []string {
	t.Helper()
	tasks, err := s.tm.List(s.ctx, queue.TaskFilter{States: []queue.TaskState{queue.TaskReady}})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, task := range tasks {
		out = append(out, task.Data["action"].(string)+":"+task.Data["object_id"].(string))
	}
	sort.Strings(out)
	return out
}

// drain runs every ready CDC task through the wrapped action until none is
// left, like a SyncManager would.
func (s cdcSetup) drain(t *testing.T, r *queue.CDCRunnerAction, action queue.TaskAction) {
	t.Helper()
	sm := queue.NewSyncManager(s.d)
	wrapped := r.Wrap(action)
	for _, n := range []string{cdcTaskNames.Create, cdcTaskNames.Update, cdcTaskNames.Delete} {
		if err := sm.RegisterTaskHandler(wrapped, n, queue.InStream("crm")); err != nil {
			t.Fatal(err)
		}
	}
	if err := sm.RunUntilIdle(s.ctx); err != nil {
		t.Fatal(err)
	}
}

var cdcSucceed = queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
	return queue.TaskResultSuccess, "ok"
})

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCDCEmitsCreateUpdateDeleteOnce(t *testing.T) {
	t.Parallel()
	s := newCDCSetup(t)
	s.exec(t, `INSERT INTO customer VALUES (1, 'Ada', 'ada@x', 1.5, now()), (2, 'Bob', 'bob@x', NULL, NULL)`)
	r := s.taskRunner(t, "customers", customerSource)

	if n := s.run(t, r); n != 2 {
		t.Fatalf("first run emitted %d, want 2 creates", n)
	}
	if got := s.pendingActions(t); !equalStrings(got, []string{"create:1", "create:2"}) {
		t.Fatalf("tasks = %v", got)
	}
	// A second diff while the tasks are queued emits nothing new.
	if n := s.run(t, r); n != 0 {
		t.Fatalf("second run while pending emitted %d, want 0", n)
	}
	s.drain(t, r, cdcSucceed)
	if n := s.run(t, r); n != 0 {
		t.Fatalf("run after sync emitted %d, want 0", n)
	}

	s.exec(t, `UPDATE customer SET name = 'Ada L' WHERE id = 1`)
	s.exec(t, `DELETE FROM customer WHERE id = 2`)
	s.exec(t, `INSERT INTO customer VALUES (3, 'Cy', NULL, 0, NULL)`)
	if n := s.run(t, r); n != 3 {
		t.Fatalf("emitted %d after changes, want 3", n)
	}
	if got := s.pendingActions(t); !equalStrings(got, []string{"create:3", "delete:2", "update:1"}) {
		t.Fatalf("tasks = %v", got)
	}
	// A further change of a pending row is emitted again (newest wins in the queue).
	s.exec(t, `UPDATE customer SET name = 'Ada Lovelace' WHERE id = 1`)
	if n := s.run(t, r); n != 1 {
		t.Fatalf("emitted %d after a further change, want 1", n)
	}
	s.drain(t, r, cdcSucceed)
	if n := s.run(t, r); n != 0 {
		t.Fatalf("run after second sync emitted %d, want 0", n)
	}
	var rows int
	if err := s.db.QueryRow(`SELECT count(*) FROM cdc_hash WHERE object_id = '2'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Fatal("deleted object 2 is still tracked after its delete synced")
	}
}

func TestCDCControllersAreIsolated(t *testing.T) {
	t.Parallel()
	s := newCDCSetup(t)
	s.exec(t, `INSERT INTO customer VALUES (1, 'Ada', NULL, NULL, NULL), (2, 'Bob', NULL, NULL, NULL)`)
	a := s.taskRunner(t, "a", `SELECT id AS object_id, name FROM customer WHERE id = 1`)
	b := s.taskRunner(t, "b", `SELECT id AS object_id, name FROM customer WHERE id = 2`)
	s.run(t, a)
	s.drain(t, a, cdcSucceed)
	// b has never synced; a's rows in cdc_hash must not look deleted to b,
	// nor b's rows to a.
	if n := s.run(t, b); n != 1 {
		t.Fatalf("b emitted %d, want its 1 create", n)
	}
	s.drain(t, b, cdcSucceed)
	if n := s.run(t, a); n != 0 {
		t.Fatalf("a emitted %d after b synced, want 0 (another controller's rows leaked in)", n)
	}
	if n := s.run(t, b); n != 0 {
		t.Fatalf("b emitted %d, want 0", n)
	}
}

func TestCDCFailureIsEmittedAgain(t *testing.T) {
	t.Parallel()
	s := newCDCSetup(t)
	s.exec(t, `INSERT INTO customer VALUES (1, 'Ada', NULL, NULL, NULL)`)
	r := s.taskRunner(t, "customers", customerSource)
	s.run(t, r)
	s.drain(t, r, queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
		return queue.TaskResultPermanentFailure, "CRM refused"
	}))
	if n := s.run(t, r); n != 1 {
		t.Fatalf("after a failed sync the next run emitted %d, want 1", n)
	}
	if got := s.pendingActions(t); !equalStrings(got, []string{"create:1"}) {
		t.Fatalf("tasks = %v", got)
	}
}

func TestCDCHashIsCanonical(t *testing.T) {
	t.Parallel()
	s := newCDCSetup(t)
	s.exec(t, `CREATE TABLE thing (id int, t text, f float8, ts timestamptz, d date, n numeric, j json)`)
	s.exec(t, `INSERT INTO thing VALUES
		(1, NULL, 0.1, '2024-03-01 12:00:00+00', '2024-03-01', 1.5, '{"a": 1}'),
		(2, '', 0.1, '2024-03-01 12:00:00+00', '2024-03-01', 1.5, '{"a": 1}')`)
	r := s.taskRunner(t, "things", `SELECT id AS object_id, t, f, ts, d, n, j FROM thing`)
	s.run(t, r)
	tasks, err := s.tm.List(s.ctx, queue.TaskFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 2 || tasks[0].Data["hash"] == tasks[1].Data["hash"] {
		t.Fatalf("NULL and '' hash alike: %v", tasks)
	}
	s.drain(t, r, cdcSucceed)

	// Session settings that change the text form of values must not change
	// the hashes: a run under them finds nothing to emit.
	for _, set := range []string{
		`ALTER DATABASE current_database() SET timezone = 'Pacific/Chatham'`,
		`ALTER DATABASE current_database() SET extra_float_digits = -3`,
		`ALTER DATABASE current_database() SET datestyle = 'SQL, DMY'`,
		`ALTER DATABASE current_database() SET intervalstyle = 'sql_standard'`,
	} {
		if _, err := s.db.Exec(rewriteCurrentDatabase(t, s.db, set)); err != nil {
			t.Fatalf("%s: %v", set, err)
		}
	}
	s.db.SetMaxIdleConns(0) // new connections pick the settings up
	s.db.SetMaxIdleConns(2)
	var tz string
	if err := s.db.QueryRow(`SHOW timezone`).Scan(&tz); err != nil || tz != "Pacific/Chatham" {
		t.Fatalf("the session did not pick up the time zone (%q, %v)", tz, err)
	}
	if n := s.run(t, r); n != 0 {
		t.Fatalf("changing TimeZone/extra_float_digits/DateStyle made %d objects look changed", n)
	}
	// A real change still shows.
	s.exec(t, `UPDATE thing SET f = 0.1000000001 WHERE id = 1`)
	if n := s.run(t, r); n != 1 {
		t.Fatalf("a float change emitted %d, want 1", n)
	}
}

// rewriteCurrentDatabase puts the current database's quoted name into an
// ALTER DATABASE statement.
func rewriteCurrentDatabase(t *testing.T, db *sql.DB, stmt string) string {
	var name string
	if err := db.QueryRow(`SELECT quote_ident(current_database())`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	const marker = "current_database()"
	for i := 0; i+len(marker) <= len(stmt); i++ {
		if stmt[i:i+len(marker)] == marker {
			return stmt[:i] + name + stmt[i+len(marker):]
		}
	}
	return stmt
}

func TestCDCHashVersionChange(t *testing.T) {
	t.Parallel()
	s := newCDCSetup(t)
	s.exec(t, `INSERT INTO customer VALUES (1, 'Ada', 'a@x', NULL, NULL)`)
	r := s.taskRunner(t, "customers", `SELECT id AS object_id, name FROM customer`)
	s.run(t, r)
	s.drain(t, r, cdcSucceed)

	wider := s.taskRunner(t, "customers", `SELECT id AS object_id, name, email FROM customer`)
	if _, err := wider.Run(s.ctx); !errors.Is(err, queue.ErrCDCHashVersion) {
		t.Fatalf("tracked columns changed: err = %v, want ErrCDCHashVersion", err)
	}
	rebased := s.taskRunner(t, "customers", `SELECT id AS object_id, name, email FROM customer`, queue.WithCDCRebaseline())
	if n := s.run(t, rebased); n != 0 {
		t.Fatalf("re-baseline emitted %d, want 0", n)
	}
	s.exec(t, `UPDATE customer SET email = 'ada@x' WHERE id = 1`)
	if n := s.run(t, wider); n != 1 {
		t.Fatalf("after re-baseline a change of the new column emitted %d, want 1", n)
	}
}

func TestCDCConcurrentRunnersEmitOnce(t *testing.T) {
	t.Parallel()
	s := newCDCSetup(t)
	s.exec(t, `INSERT INTO customer SELECT g, 'c' || g, NULL, NULL, NULL FROM generate_series(1, 2000) g`)
	r := s.taskRunner(t, "customers", customerSource)
	var wg sync.WaitGroup
	counts := make([]int, 4)
	for i := range counts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := r.Run(s.ctx)
			if err != nil {
				t.Error(err)
			}
			counts[i] = n
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range counts {
		total += n
	}
	if total != 2000 {
		t.Fatalf("four concurrent runs emitted %v = %d in all, want 2000", counts, total)
	}
	n, err := s.tm.Count(s.ctx, queue.TaskFilter{})
	if err != nil || n != 2000 {
		t.Fatalf("queue holds %d tasks (%v), want 2000", n, err)
	}
}

func TestCDCCallbacks(t *testing.T) {
	t.Parallel()
	s := newCDCSetup(t)
	s.exec(t, `INSERT INTO customer VALUES (1, 'Ada', NULL, NULL, NULL), (2, 'Bob', NULL, NULL, NULL)`)
	var mu sync.Mutex
	var seen []string
	fail := map[string]bool{"2": true}
	record := func(o queue.CDCObjectAction) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, string(o.Action)+":"+o.ObjectID)
		if fail[o.ObjectID] {
			return errors.New("downstream refused")
		}
		return nil
	}
	r, err := queue.NewCDCRunner(s.d, "cb", queue.TrackColumns(customerSource),
		queue.CDCCallbacks{Create: record, Update: record, Delete: record})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(s.ctx); err == nil {
		t.Fatal("a failing callback was not reported")
	}
	sort.Strings(seen)
	if !equalStrings(seen, []string{"create:1", "create:2"}) {
		t.Fatalf("callbacks saw %v", seen)
	}
	// Object 2 failed: it comes again; object 1 succeeded: it does not.
	seen, fail = nil, map[string]bool{}
	s.exec(t, `DELETE FROM customer WHERE id = 1`)
	if n, err := r.Run(s.ctx); err != nil || n != 2 {
		t.Fatalf("second run applied %d (%v), want 2", n, err)
	}
	sort.Strings(seen)
	if !equalStrings(seen, []string{"create:2", "delete:1"}) {
		t.Fatalf("second run saw %v", seen)
	}
}

func TestCDCOriginalConstructor(t *testing.T) {
	t.Parallel()
	s := newCDCSetup(t)
	s.exec(t, `INSERT INTO customer VALUES (1, 'Ada', NULL, NULL, NULL)`)
	var created []string
	add := func(o queue.CDCObjectAction) error { created = append(created, o.ObjectID); return nil }
	none := func(queue.CDCObjectAction) error { return errors.New("unexpected") }
	r, err := queue.NewCDCRunnerAction("7f2c6d5e-1b2a-4c3d-9e8f-0a1b2c3d4e5f",
		`SELECT id AS object_id, md5(name)::uuid AS hash FROM customer`, "public", s.db, add, none, none, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Do(); err != nil {
		t.Fatal(err)
	}
	if err := r.Do(); err != nil {
		t.Fatal(err)
	}
	if !equalStrings(created, []string{"1"}) {
		t.Fatalf("created %v, want [1] once", created)
	}
}

// TestCDCKeepsOriginalSyncState: objects the original runner synced (rows
// of the seed's cdc_hash with an md5 uuid hash) are not emitted again after
// the upgrade; a real change still is.
func TestCDCKeepsOriginalSyncState(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	ctx := context.Background()
	const controller = "0b7e7c1a-5d1f-4e0a-9a51-2f0c8f6f1e11"
	for _, q := range []string{
		seedSchema,
		`CREATE TABLE customer (id int PRIMARY KEY, name text)`,
		`INSERT INTO customer VALUES (1, 'Ada'), (2, 'Bob')`,
		`INSERT INTO cdc_hash (cdc_controller_id, object_id, hash)
		 SELECT '` + controller + `', id::text, md5(name)::uuid FROM customer`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var seen []string
	record := func(o queue.CDCObjectAction) error { seen = append(seen, string(o.Action)+":"+o.ObjectID); return nil }
	r, err := queue.NewCDCRunnerAction(controller, `SELECT id AS object_id, md5(name)::uuid AS hash FROM customer`,
		"public", db, record, record, record, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Do(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 0 {
		t.Fatalf("after the upgrade the runner re-emitted %v, which the original had synced", seen)
	}
	if _, err := db.ExecContext(ctx, `UPDATE customer SET name = 'Bobby' WHERE id = 2`); err != nil {
		t.Fatal(err)
	}
	if err := r.Do(); err != nil {
		t.Fatal(err)
	}
	if !equalStrings(seen, []string{"update:2"}) {
		t.Fatalf("after a change the runner emitted %v, want [update:2]", seen)
	}
}

// TestCDCFirstSyncRows: a first sync adds one cdc_hash row and one task per
// object (pending, not yet synced), also for objects that appear later.
func TestCDCFirstSyncRows(t *testing.T) {
	t.Parallel()
	s := newCDCSetup(t)
	s.exec(t, `INSERT INTO customer SELECT g, 'c' || g, NULL, NULL, NULL FROM generate_series(1, 300) g`)
	r := s.taskRunner(t, "customers", customerSource)
	if n := s.run(t, r); n != 300 {
		t.Fatalf("first run emitted %d, want 300", n)
	}
	s.exec(t, `INSERT INTO customer SELECT g, 'c' || g, NULL, NULL, NULL FROM generate_series(301, 400) g`)
	if n := s.run(t, r); n != 100 {
		t.Fatalf("second run emitted %d, want the 100 new objects", n)
	}
	var tasks, keys, rows, pending int
	if err := s.db.QueryRow(`SELECT count(*), count(DISTINCT task_key) FROM message_queue`).Scan(&tasks, &keys); err != nil {
		t.Fatal(err)
	}
	if tasks != 400 || keys != 400 {
		t.Fatalf("%d tasks on %d keys, want 400 and 400", tasks, keys)
	}
	if err := s.db.QueryRow(`SELECT count(*), count(pending_hash) FROM cdc_hash WHERE row_hash IS NULL AND cdc_controller_id = $1`,
		r.ControllerID()).Scan(&rows, &pending); err != nil {
		t.Fatal(err)
	}
	if rows != 400 || pending != 400 {
		t.Fatalf("cdc_hash holds %d unsynced rows, %d pending, want 400 and 400", rows, pending)
	}
}

// TestCDCDeleteSyncedWhileRecreatePending: an object deleted and then
// re-created while its delete task runs stays tracked when the delete
// succeeds, so the pending create is not emitted a second time.
func TestCDCDeleteSyncedWhileRecreatePending(t *testing.T) {
	t.Parallel()
	s := newCDCSetup(t)
	s.exec(t, `INSERT INTO customer VALUES (2, 'Bob', 'bob@x', NULL, NULL)`)
	r := s.taskRunner(t, "customers", customerSource)
	s.run(t, r)
	s.drain(t, r, cdcSucceed)

	s.exec(t, `DELETE FROM customer WHERE id = 2`)
	if n := s.run(t, r); n != 1 {
		t.Fatalf("emitted %d after the delete, want 1", n)
	}
	claimed, err := s.d.Claim(s.ctx, queue.ClaimParams{Names: []string{cdcTaskNames.Delete}, Limit: 1, Lease: time.Minute})
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim the delete task: %d tasks, %v", len(claimed), err)
	}
	s.exec(t, `INSERT INTO customer VALUES (2, 'Bob again', 'bob@y', NULL, NULL)`)
	if n := s.run(t, r); n != 1 {
		t.Fatalf("emitted %d after the object came back, want 1 (its create)", n)
	}
	if res, msg := r.Wrap(cdcSucceed).Do(claimed[0].Task); res != queue.TaskResultSuccess {
		t.Fatalf("delete task: %s %s", res, msg)
	}

	var rowHash, pending sql.NullInt64
	if err := s.db.QueryRow(`SELECT row_hash, pending_hash FROM cdc_hash WHERE object_id = '2'`).Scan(&rowHash, &pending); err != nil {
		t.Fatalf("object 2 forgotten after its delete synced while its create was pending: %v", err)
	}
	if rowHash.Valid || !pending.Valid {
		t.Fatalf("object 2: row_hash %v pending %v, want none stored and the create pending", rowHash, pending)
	}
	if n := s.run(t, r); n != 0 {
		t.Fatalf("emitted %d while the create was pending, want 0", n)
	}
	if _, err := s.d.Finish(s.ctx, []queue.Completion{{Lease: claimed[0].Lease, State: queue.TaskDone}}); err != nil {
		t.Fatal(err)
	}
	s.drain(t, r, cdcSucceed)
	if n := s.run(t, r); n != 0 {
		t.Fatalf("emitted %d after the create synced, want 0", n)
	}
}

// TestCDCTasksCarryTheRow: with IncludeRow, create and update tasks carry
// the changed source row as JSON (its columns by name, as to_jsonb writes
// them) and deletes carry none; without it no task carries a row.
func TestCDCTasksCarryTheRow(t *testing.T) {
	t.Parallel()
	s := newCDCSetup(t)
	s.exec(t, `INSERT INTO customer VALUES (1, 'Ada', 'ada@x', 1.5, '2026-01-02T03:04:05Z'), (2, 'Bob', NULL, NULL, NULL), (3, 'Cy', 'cy@x', 0, NULL)`)
	r := s.taskRunner(t, "customers", customerSource)
	s.run(t, r)
	s.drain(t, r, cdcSucceed)
	s.exec(t, `UPDATE customer SET name = 'Ada L' WHERE id = 1`)
	s.exec(t, `DELETE FROM customer WHERE id = 2`)
	s.exec(t, `INSERT INTO customer VALUES (4, 'Di', NULL, 2, NULL)`)
	if n := s.run(t, r); n != 3 {
		t.Fatalf("emitted %d, want 3", n)
	}
	tasks, err := s.tm.List(s.ctx, queue.TaskFilter{States: []queue.TaskState{queue.TaskReady}})
	requireNoError(t, err)
	rows := map[string]string{}
	for _, task := range tasks {
		var data struct {
			Action string          `json:"action"`
			Row    json.RawMessage `json:"row"`
		}
		requireNoError(t, task.Decode(&data))
		rows[data.Action] = string(data.Row)
	}
	want := map[string]string{
		"update": `{"name": "Ada L", "seen": "2026-01-02T03:04:05+00:00", "email": "ada@x", "score": 1.5, "object_id": 1}`,
		"create": `{"name": "Di", "seen": null, "email": null, "score": 2, "object_id": 4}`,
		"delete": "",
	}
	for action, w := range want {
		if got := rows[action]; got != w {
			t.Errorf("%s task row %s, want %s", action, got, w)
		}
	}

	plain, err := queue.NewCDCRunner(s.d, "plain", queue.TrackColumns(customerSource),
		queue.CDCTasks{Create: "p.create", Update: "p.update", Delete: "p.delete"})
	requireNoError(t, err)
	if n := s.run(t, plain); n != 3 {
		t.Fatalf("the second controller emitted %d, want 3 creates", n)
	}
	created, err := s.tm.List(s.ctx, queue.TaskFilter{Name: "p.create"})
	requireNoError(t, err)
	for _, task := range created {
		if _, ok := task.Data["row"]; ok {
			t.Fatalf("a task of a controller without IncludeRow carries a row: %s", task.RawData)
		}
	}
}
