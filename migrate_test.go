package queue_test

import (
	"context"
	"database/sql"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// latestMigration is the version of the newest file in migrations/.
func latestMigration(t *testing.T) int {
	t.Helper()
	_, latest := migrationFiles(t)
	return latest
}

// migrationFiles counts the files in migrations/ and finds the newest
// version.
func migrationFiles(t *testing.T) (n, latest int) {
	t.Helper()
	entries, err := os.ReadDir("migrations")
	requireNoError(t, err)
	for _, e := range entries {
		num, _, _ := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		requireNoError(t, err)
		latest = max(latest, v)
		n++
	}
	if n == 0 {
		t.Fatal("no migrations found")
	}
	return n, latest
}

func TestMigrateTwiceIsNoOp(t *testing.T) {
	t.Parallel()
	b := setup(t) // migrated once
	latest := latestMigration(t)

	v, err := b.driver.MigrationVersion(b.ctx)
	requireNoError(t, err)
	if v != latest {
		t.Fatalf("version %d after Migrate, want %d", v, latest)
	}
	id := b.add(t, "job", "K", map[string]any{"keep": true})
	var ledger string
	ledgerOf := func() string {
		requireNoError(t, b.db.QueryRowContext(b.ctx,
			`SELECT string_agg(version || ':' || name || '@' || applied_at, ',' ORDER BY version) FROM public.esync_migrations`).Scan(&ledger))
		return ledger
	}
	before := ledgerOf()

	requireNoError(t, b.driver.Migrate(b.ctx))
	v, err = b.driver.MigrationVersion(b.ctx)
	requireNoError(t, err)
	if v != latest {
		t.Fatalf("version %d after the second Migrate, want %d", v, latest)
	}
	if after := ledgerOf(); after != before {
		t.Fatalf("ledger changed:\nbefore %s\nafter  %s", before, after)
	}
	if r := b.row(t, id); r.State != "READY" || r.Data != `{"keep": true}` {
		t.Fatalf("task after the second Migrate: %+v", r)
	}
}

func TestMigrateConcurrentlyOnFreshDatabase(t *testing.T) {
	t.Parallel()
	dsn := queuetest.NewDSN(t)
	const n = 6
	drivers := make([]*queue.PostgresDriver, n)
	for i := range drivers {
		d, err := queue.OpenPostgres(dsn)
		requireNoError(t, err)
		t.Cleanup(func() { d.Close() })
		drivers[i] = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, d := range drivers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = d.Migrate(ctx)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Migrate %d: %v", i, err)
		}
	}
	files, latest := migrationFiles(t)
	var rows, versions int
	requireNoError(t, drivers[0].DB().QueryRowContext(ctx,
		`SELECT count(*), count(DISTINCT version) FROM public.esync_migrations WHERE queue_table = 'message_queue'`).Scan(&rows, &versions))
	if rows != files || versions != files {
		t.Fatalf("ledger has %d rows for %d versions, want %d of each", rows, versions, files)
	}
	for _, d := range drivers {
		if v, err := d.MigrationVersion(ctx); err != nil || v != latest {
			t.Fatalf("version %d %v, want %d", v, err, latest)
		}
	}
	tm := queue.NewTaskManager(drivers[1])
	if _, err := tm.Add(ctx, "job", "K", nil); err != nil {
		t.Fatal(err)
	}
}

func TestMigrateWithSchemaAndTable(t *testing.T) {
	t.Parallel()
	b := setup(t, queue.WithSchema("tenant_a"), queue.WithTable("jobs"))
	ctx := b.ctx

	if b.driver.Schema() != "tenant_a" || b.driver.Table() != "jobs" {
		t.Fatalf("driver on %s.%s", b.driver.Schema(), b.driver.Table())
	}
	for _, want := range [][2]string{{"tenant_a", "jobs"}, {"tenant_a", "cdc_hash"}} {
		if !tableExists(t, ctx, b.db, want[0], want[1]) {
			t.Fatalf("%s.%s not created", want[0], want[1])
		}
	}
	for _, unwanted := range [][2]string{{"public", "message_queue"}, {"public", "jobs"}, {"public", "cdc_hash"}} {
		if tableExists(t, ctx, b.db, unwanted[0], unwanted[1]) {
			t.Fatalf("%s.%s created", unwanted[0], unwanted[1])
		}
	}
	id := b.add(t, "job", "K", nil)
	var inTenant int
	requireNoError(t, b.db.QueryRowContext(ctx, `SELECT count(*) FROM tenant_a.jobs WHERE id = $1`, id).Scan(&inTenant))
	if inTenant != 1 {
		t.Fatal("task not in tenant_a.jobs")
	}

	// A second queue in the same database, in the default place, is
	// separate: its own table, channel and tasks.
	other, err := queue.NewPostgresDriverFromDB(b.db)
	requireNoError(t, err)
	requireNoError(t, other.Migrate(ctx))
	if other.Channel() == b.driver.Channel() {
		t.Fatalf("both queues announce on %q", other.Channel())
	}
	got, err := other.Claim(ctx, queue.ClaimParams{Names: []string{"job"}, Limit: 10, Lease: time.Minute})
	if err != nil || len(got) != 0 {
		t.Fatalf("the default queue claimed %v %v from tenant_a.jobs", claimedIDs(got), err)
	}
	if c := b.claimOne(t); c.ID != id {
		t.Fatalf("claimed %d, want %d", c.ID, id)
	}
	var versions int
	requireNoError(t, b.db.QueryRowContext(ctx, `SELECT count(*) FROM tenant_a.esync_migrations WHERE queue_table = 'jobs'`).Scan(&versions))
	if files, _ := migrationFiles(t); versions != files {
		t.Fatalf("tenant_a ledger has %d versions", versions)
	}
}

// The original esync schema, exactly as its README gave it.
const seedSchema = `
CREATE TABLE public.message_queue(
	message_queue_id uuid NOT NULL DEFAULT gen_random_uuid(),
	data jsonb NOT NULL DEFAULT '{}',
	task_key varchar(64) NOT NULL,
	task_name varchar(64) NOT NULL,
	created_at timestamptz DEFAULT Now(),
  created_by varchar(64) NOT NULL,
	last_attempted timestamptz NOT NULL DEFAULT Now(),
	state varchar(16) NOT NULL,
	last_attempt_message varchar NOT NULL,
  do_after timestamptz NOT NULL DEFAULT Now(),
	CONSTRAINT message_queue_id_pk PRIMARY KEY (message_queue_id)
);

CREATE TABLE public.cdc_hash(
	cdc_hash_id uuid NOT NULL DEFAULT gen_random_uuid(),
	cdc_controller_id uuid NOT NULL,
	object_id varchar NOT NULL,
	hash uuid,
	created_at timestamptz NOT NULL DEFAULT Now(),
	updated_at timestamptz NOT NULL DEFAULT Now(),
	CONSTRAINT cdc_hash_pk PRIMARY KEY (cdc_hash_id),
	CONSTRAINT cdc_hash_controller_object_uq UNIQUE (cdc_controller_id,object_id)
);

CREATE INDEX idx_cdc_hash_id ON public.cdc_hash (cdc_controller_id, object_id);
CREATE INDEX idx_cdc_hash_id_hash ON public.cdc_hash (cdc_controller_id, object_id, hash);
`

// seedRow is a row as the original esync stored it.
type seedRow struct {
	uuid, key, name, state, data, createdBy, message string
	age                                              time.Duration // created this long ago; 0 means created_at NULL
}

func TestMigrateUpgradesSeedSchema(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := queuetest.NewDB(t)
	if _, err := db.ExecContext(ctx, seedSchema); err != nil {
		t.Fatal(err)
	}
	seed := []seedRow{
		{"10000000-0000-0000-0000-000000000001", "customer:1", "sync", "READY", `{"v": 1}`, "crm", "", 3 * time.Hour},
		{"10000000-0000-0000-0000-000000000002", "customer:1", "sync", "READY", `{"v": 2}`, "crm", "", 2 * time.Hour},
		{"10000000-0000-0000-0000-000000000003", "customer:1", "sync", "READY", `{"v": 3}`, "crm", "", time.Hour},
		{"20000000-0000-0000-0000-000000000001", "customer:2", "sync", "READY", `{"w": "a"}`, "web", "", 150 * time.Minute},
		{"20000000-0000-0000-0000-000000000002", "customer:2", "sync", "READY", `{"w": "b"}`, "web", "", 90 * time.Minute},
		{"30000000-0000-0000-0000-000000000001", "customer:3", "sync", "IN PROGRESS", `{"x": true}`, "crm", "", 4 * time.Hour},
		{"40000000-0000-0000-0000-000000000001", "customer:4", "sync", "DONE", `{}`, "crm", "No Problem", 5 * time.Hour},
		{"50000000-0000-0000-0000-000000000001", "customer:5", "email", "FAILED", `{"to": "a@example.com"}`, "mailer", "bounced", 6 * time.Hour},
		{"60000000-0000-0000-0000-000000000001", "customer:6", "sync", "CANCELLED", `{}`, "crm", "No handler", 0},
	}
	for _, r := range seed {
		var created any
		if r.age > 0 {
			created = time.Now().Add(-r.age)
		}
		// As the original inserted them: last_attempted defaults with
		// created_at, and moves on when the task is popped.
		_, err := db.ExecContext(ctx, `INSERT INTO public.message_queue
			(message_queue_id, data, task_key, task_name, created_at, created_by, last_attempted, state, last_attempt_message, do_after)
			VALUES ($1, $2, $3, $4, $5, $6, coalesce($5, now() - interval '7 hours') + CASE WHEN $7 IN ('READY') THEN interval '0' ELSE interval '1 minute' END, $7, $8, coalesce($5, now()))`,
			r.uuid, r.data, r.key, r.name, created, r.createdBy, r.state, r.message)
		if err != nil {
			t.Fatalf("insert %s: %v", r.uuid, err)
		}
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO public.cdc_hash (cdc_controller_id, object_id, hash)
		VALUES ('aaaaaaaa-0000-0000-0000-000000000001', 'obj-1', 'bbbbbbbb-0000-0000-0000-000000000001')`); err != nil {
		t.Fatal(err)
	}

	d, err := queue.NewPostgresDriverFromDB(db)
	requireNoError(t, err)
	requireNoError(t, d.Migrate(ctx))
	b := &testBundle{ctx: ctx, driver: d, db: db, tm: queue.NewTaskManager(d), table: "public.message_queue"}

	// Every row kept, data intact, ids in created_at order (NULL first).
	type upgraded struct {
		id                                    int64
		uuid, key, name, state, data, by, msg string
		finished                              bool
	}
	rs, err := db.QueryContext(ctx, `SELECT id, message_queue_id::text, task_key, task_name, state, data::text, created_by,
		last_attempt_message, finished_at IS NOT NULL FROM public.message_queue ORDER BY created_at NULLS FIRST`)
	requireNoError(t, err)
	byUUID := map[string]upgraded{}
	var ids []int64
	for rs.Next() {
		var u upgraded
		requireNoError(t, rs.Scan(&u.id, &u.uuid, &u.key, &u.name, &u.state, &u.data, &u.by, &u.msg, &u.finished))
		byUUID[u.uuid] = u
		ids = append(ids, u.id)
	}
	requireNoError(t, rs.Err())
	rs.Close()
	if len(byUUID) != len(seed) {
		t.Fatalf("%d rows after upgrade, want %d", len(byUUID), len(seed))
	}
	for i, id := range ids {
		if id != int64(i+1) {
			t.Fatalf("ids in created_at order: %v, want 1..%d", ids, len(seed))
		}
	}
	for _, s := range seed {
		u, ok := byUUID[s.uuid]
		if !ok {
			t.Fatalf("row %s lost", s.uuid)
		}
		wantState := s.state
		if s.state == "IN PROGRESS" {
			wantState = "RETRY"
		}
		if u.key != s.key || u.name != s.name || u.data != s.data || u.by != s.createdBy || u.state != wantState {
			t.Fatalf("row %s: %+v, want %+v in state %s", s.uuid, u, s, wantState)
		}
		if final := queue.TaskState(u.state).Terminal(); u.finished != final {
			t.Fatalf("row %s (%s): finished_at set %v", s.uuid, u.state, u.finished)
		}
		if s.message != "" && u.msg != s.message {
			t.Fatalf("row %s: message %q, want %q", s.uuid, u.msg, s.message)
		}
	}
	var cdcRows int
	requireNoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM public.cdc_hash WHERE object_id = 'obj-1'
		AND hash = 'bbbbbbbb-0000-0000-0000-000000000001'`).Scan(&cdcRows))
	if cdcRows != 1 {
		t.Fatal("cdc_hash row lost")
	}

	// A second Migrate changes nothing.
	dump := func() string {
		var s string
		requireNoError(t, db.QueryRowContext(ctx, `SELECT string_agg(m::text, E'\n' ORDER BY id) FROM public.message_queue m`).Scan(&s))
		return s
	}
	before := dump()
	v1, err := d.MigrationVersion(ctx)
	requireNoError(t, err)
	requireNoError(t, d.Migrate(ctx))
	v2, err := d.MigrationVersion(ctx)
	requireNoError(t, err)
	if after := dump(); after != before || v1 != v2 || v1 != latestMigration(t) {
		t.Fatalf("second Migrate changed things: version %d -> %d\nbefore %s\nafter  %s", v1, v2, before, after)
	}

	// READY rows run newest-wins; the row left IN PROGRESS runs again.
	got := b.claim(t, 10, "sync", "email")
	want := map[string]string{
		"customer:1": "10000000-0000-0000-0000-000000000003",
		"customer:2": "20000000-0000-0000-0000-000000000002",
		"customer:3": "30000000-0000-0000-0000-000000000001",
	}
	if len(got) != len(want) {
		t.Fatalf("claimed %v, want one task for each of %v", claimedIDs(got), want)
	}
	for _, c := range got {
		if byUUID[want[c.Key]].id != c.ID {
			t.Fatalf("claimed task %d for %s, want the row %s", c.ID, c.Key, want[c.Key])
		}
	}
	for _, older := range []string{"10000000-0000-0000-0000-000000000001", "10000000-0000-0000-0000-000000000002", "20000000-0000-0000-0000-000000000001"} {
		u := byUUID[older]
		r := b.row(t, u.id)
		if r.State != "SUPERSEDED" || r.SupersededBy.Int64 != byUUID[want[u.key]].id {
			t.Fatalf("older seed row %s: %s by %v", older, r.State, r.SupersededBy)
		}
	}

	// New tasks get ids after the old rows and a key longer than the
	// original 64 characters fits.
	id := b.add(t, "sync", strings.Repeat("k", 255), nil)
	if id <= int64(len(seed)) {
		t.Fatalf("new task id %d, want > %d", id, len(seed))
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO public.message_queue (task_key, task_name, created_by, state, last_attempt_message)
		VALUES ('raw', 'sync', 'x', 'READY', '')`); err != nil {
		t.Fatalf("insert in the original style after the upgrade: %v", err)
	}
	b.requireState(t, queue.TaskReady, id)
}

// A failed migration leaves the database as it was: the ledger records
// nothing and the next Migrate applies everything.
func TestMigrateIsAtomic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := queuetest.NewDB(t)
	// A table in the way with an incompatible shape makes a migration fail.
	if _, err := db.ExecContext(ctx, `CREATE TABLE public.message_queue (task_key int)`); err != nil {
		t.Fatal(err)
	}
	d, err := queue.NewPostgresDriverFromDB(db)
	requireNoError(t, err)
	if err := d.Migrate(ctx); err == nil {
		t.Fatal("Migrate over an incompatible table: no error")
	}
	var ledger sql.NullString
	requireNoError(t, db.QueryRowContext(ctx, `SELECT to_regclass('public.esync_migrations')::text`).Scan(&ledger))
	if ledger.Valid {
		var n int
		requireNoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM public.esync_migrations`).Scan(&n))
		if n != 0 {
			t.Fatalf("ledger records %d migrations after a failed Migrate", n)
		}
	}
	if tableExists(t, ctx, db, "public", "cdc_hash") {
		t.Fatal("cdc_hash created by a failed Migrate")
	}

	if _, err := db.ExecContext(ctx, `DROP TABLE public.message_queue`); err != nil {
		t.Fatal(err)
	}
	requireNoError(t, d.Migrate(ctx))
	if v, err := d.MigrationVersion(ctx); err != nil || v != latestMigration(t) {
		t.Fatalf("version %d %v after retrying Migrate", v, err)
	}
}
