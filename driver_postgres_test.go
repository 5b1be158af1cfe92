package queue_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

func TestClaimSetsLease(t *testing.T) {
	t.Parallel()
	b := setup(t)

	id := b.add(t, "job", "K", map[string]any{"a": "b"})
	before := time.Now()
	c := b.claimOne(t)
	if c.ID != id || c.Key != "K" || c.Name != "job" || c.Data["a"] != "b" || string(c.RawData) != `{"a": "b"}` {
		t.Fatalf("claimed %+v", c.Task)
	}
	if c.State != queue.TaskInProgress || c.Attempt != 1 || c.MaxAttempts != queue.DefaultMaxAttempts {
		t.Fatalf("claimed task: state %s attempt %d max %d", c.State, c.Attempt, c.MaxAttempts)
	}
	if c.Lease.TaskID != id || c.Lease.Token == "" || c.Lease.Expires.Before(before.Add(20*time.Second)) {
		t.Fatalf("lease %+v: want the task's id, a token and an expiry ~30s ahead", c.Lease)
	}
	r := b.row(t, id)
	if r.State != "IN PROGRESS" || r.Attempts != 1 || r.LeaseToken.String != c.Lease.Token || !r.LeaseExpires.Valid {
		t.Fatalf("stored row %+v does not match the claim", r)
	}
	if got := b.claim(t, 10); len(got) != 0 {
		t.Fatalf("second claim returned %v", claimedIDs(got))
	}
}

func TestClaimParams(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "job", "K", nil)

	for _, p := range []queue.ClaimParams{
		{Names: nil, Limit: 10, Lease: time.Minute},
		{Names: []string{"job"}, Limit: 0, Lease: time.Minute},
	} {
		got, err := b.driver.Claim(b.ctx, p)
		if err != nil || len(got) != 0 {
			t.Fatalf("claim %+v: %v %v, want nothing and no error", p, claimedIDs(got), err)
		}
	}
	if _, err := b.driver.Claim(b.ctx, queue.ClaimParams{Names: []string{"job"}, Limit: 1}); err == nil {
		t.Fatal("claim without a lease: no error")
	}
	b.requireState(t, queue.TaskReady, 1)
}

func TestClaimLimitAndQueueOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)

	var ids []int64
	for i := range 5 {
		ids = append(ids, b.add(t, "job", fmt.Sprintf("k%d", i), nil))
	}
	got := b.claim(t, 3)
	if fmt.Sprint(claimedIDs(got)) != fmt.Sprint(ids[:3]) {
		t.Fatalf("claimed %v, want the three oldest %v", claimedIDs(got), ids[:3])
	}
	got = b.claim(t, 3)
	if fmt.Sprint(claimedIDs(got)) != fmt.Sprint(ids[3:]) {
		t.Fatalf("claimed %v, want %v", claimedIDs(got), ids[3:])
	}
}

func TestClaimOnlyNamedTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)

	a := b.add(t, "a", "K1", nil)
	other := b.add(t, "b", "K2", nil)
	if got := b.claim(t, 10, "a"); len(got) != 1 || got[0].ID != a {
		t.Fatalf("claim of a: %v, want [%d]", claimedIDs(got), a)
	}
	b.requireState(t, queue.TaskReady, other)

	// Dedup is per key across names: the newest task of K3 is a "b", which
	// supersedes the "a" as it is added; a claimer of "a" gets nothing.
	older := b.add(t, "a", "K3", nil)
	newer := b.add(t, "b", "K3", nil)
	if got := b.claim(t, 10, "a"); len(got) != 0 {
		t.Fatalf("claim of a: %v, want nothing", claimedIDs(got))
	}
	b.requireState(t, queue.TaskReady, newer)
	got := b.claim(t, 10, "b")
	if fmt.Sprint(claimedIDs(got)) != fmt.Sprint([]int64{other, newer}) {
		t.Fatalf("claim of b: %v, want [%d %d]", claimedIDs(got), other, newer)
	}
	if r := b.row(t, older); r.State != "SUPERSEDED" || r.SupersededBy.Int64 != newer {
		t.Fatalf("older task: %s by %v, want SUPERSEDED by %d", r.State, r.SupersededBy, newer)
	}
}

// TestFinishSentAgainAfterLostReply: a Finish whose reply was lost after it
// committed is sent again; the second one recognises the first one's commit
// and reports nothing lost, while a completion under a lease that another
// claim has taken over since is still reported lost.
func TestFinishSentAgainAfterLostReply(t *testing.T) {
	t.Parallel()
	b := setup(t)
	done := b.add(t, "job", "K1", nil)
	retried := b.add(t, "job", "K2", nil)
	got := b.claim(t, 2)
	if len(got) != 2 {
		t.Fatalf("claimed %v, want 2 tasks", claimedIDs(got))
	}
	cs := []queue.Completion{
		{Lease: got[0].Lease, State: queue.TaskDone, Message: "first"},
		{Lease: got[1].Lease, State: queue.TaskRetry, Message: "again"},
	}
	for attempt := 1; attempt <= 2; attempt++ {
		lost, err := b.driver.Finish(b.ctx, cs)
		if err != nil {
			t.Fatal(err)
		}
		if len(lost) != 0 {
			t.Fatalf("finish sent %d times: lost %v, want none", attempt, lost)
		}
	}
	b.requireState(t, queue.TaskDone, done)
	b.requireState(t, queue.TaskRetry, retried)
	// The retried task is claimed again under a new lease: the old
	// completion is now stale and reported lost.
	if _, err := b.db.ExecContext(b.ctx, `UPDATE `+b.table+` SET do_after = now() WHERE id = $1`, retried); err != nil {
		t.Fatal(err)
	}
	again := b.claimOne(t)
	lost, err := b.driver.Finish(b.ctx, cs[1:])
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) != 1 || lost[0] != retried {
		t.Fatalf("stale finish after a new claim: lost %v, want [%d]", lost, retried)
	}
	if r := b.row(t, retried); r.State != "IN PROGRESS" || r.LeaseToken.String != again.Lease.Token {
		t.Fatalf("the new claim's task after the stale finish: %s token %s, want IN PROGRESS under the new lease", r.State, r.LeaseToken.String)
	}
}

func TestFinishOutcomes(t *testing.T) {
	t.Parallel()
	b := setup(t)

	for _, state := range []queue.TaskState{queue.TaskDone, queue.TaskFailed, queue.TaskCancelled} {
		id := b.add(t, "job", "K-"+string(state), nil)
		c := b.claimOne(t)
		b.finish(t, c, state, 0)
		r := b.row(t, id)
		// The row keeps the token it was finished under (see
		// TestFinishSentAgainAfterLostReply); the lease itself is over.
		if r.State != string(state) || !r.FinishedAt.Valid || r.LeaseToken.String != c.Lease.Token || r.LeaseExpires.Valid || r.Message != "test" {
			t.Fatalf("after finish %s: %+v", state, r)
		}
	}

	// Outcomes that are not results are refused and change nothing.
	id := b.add(t, "job", "K", nil)
	c := b.claimOne(t)
	for _, state := range []queue.TaskState{queue.TaskSuperseded, queue.TaskInProgress, "BOGUS"} {
		if _, err := b.driver.Finish(b.ctx, []queue.Completion{{Lease: c.Lease, State: state}}); err == nil {
			t.Fatalf("finish with %s: no error", state)
		}
	}
	b.requireState(t, queue.TaskInProgress, id)
}

func TestFinishBatchReportsOnlyLostLeases(t *testing.T) {
	t.Parallel()
	b := setup(t)

	b.add(t, "job", "A", nil)
	b.add(t, "job", "B", nil)
	got := b.claim(t, 10)
	if len(got) != 2 {
		t.Fatalf("claimed %v", claimedIDs(got))
	}
	stale := got[1].Lease
	stale.Token = "00000000-0000-0000-0000-000000000000"
	lost, err := b.driver.Finish(b.ctx, []queue.Completion{
		{Lease: got[0].Lease, State: queue.TaskDone},
		{Lease: stale, State: queue.TaskDone},
	})
	requireNoError(t, err)
	if fmt.Sprint(lost) != fmt.Sprint([]int64{got[1].ID}) {
		t.Fatalf("lost %v, want [%d]", lost, got[1].ID)
	}
	b.requireState(t, queue.TaskDone, got[0].ID)
	b.requireState(t, queue.TaskInProgress, got[1].ID)
}

func TestDeleteFinished(t *testing.T) {
	t.Parallel()
	b := setup(t)

	old := map[string]int64{}
	for _, state := range []queue.TaskState{queue.TaskDone, queue.TaskFailed, queue.TaskCancelled} {
		old[string(state)] = b.add(t, "job", "K-"+string(state), nil)
		b.finish(t, b.claimOne(t), state, 0)
	}
	superseded := b.add(t, "job", "S", nil)
	old["DONE-S"] = b.add(t, "job", "S", nil)
	b.finish(t, b.claimOne(t), queue.TaskDone, 0) // supersedes the first S
	old["SUPERSEDED"] = superseded
	b.requireState(t, queue.TaskSuperseded, superseded)
	// All of these finished two hours ago.
	if _, err := b.db.ExecContext(b.ctx, `UPDATE `+b.table+` SET finished_at = now() - interval '2 hours' WHERE finished_at IS NOT NULL`); err != nil {
		t.Fatal(err)
	}
	// Recent or unfinished tasks stay, even if they were added long ago.
	recent := b.add(t, "job", "R", nil)
	b.finish(t, b.claimOne(t), queue.TaskDone, 0)
	pending := b.add(t, "job", "P", nil)
	retry := b.add(t, "job", "Q", nil)
	b.finish(t, b.claimOne(t), queue.TaskRetry, time.Hour)
	running := b.add(t, "job", "Z", nil)
	b.claimOne(t)
	if _, err := b.db.ExecContext(b.ctx, `UPDATE `+b.table+` SET created_at = now() - interval '3 hours' WHERE id IN ($1, $2, $3)`, pending, retry, running); err != nil {
		t.Fatal(err)
	}

	horizon := time.Now().Add(-time.Hour)
	n, err := b.driver.DeleteFinished(b.ctx, horizon, 3)
	requireNoError(t, err)
	if n != 3 {
		t.Fatalf("deleted %d with limit 3, want 3", n)
	}
	n, err = b.driver.DeleteFinished(b.ctx, horizon, 100)
	requireNoError(t, err)
	if n != 2 {
		t.Fatalf("deleted %d, want the last two old final tasks", n)
	}
	for state, id := range old {
		if c := b.count(t, `SELECT count(*) FROM %s WHERE id = $1`, id); c != 0 {
			t.Fatalf("old %s task %d was not deleted", state, id)
		}
	}
	var left []int64
	for _, r := range b.rows(t) {
		left = append(left, r.ID)
	}
	if fmt.Sprint(left) != fmt.Sprint([]int64{recent, pending, retry, running}) {
		t.Fatalf("tasks left %v, want %v", left, []int64{recent, pending, retry, running})
	}
}

func TestListTasksFiltersAndPages(t *testing.T) {
	t.Parallel()
	b := setup(t)

	var ids []int64
	for i := range 7 {
		ids = append(ids, b.add(t, []string{"a", "b"}[i%2], []string{"K", "L", "M"}[i%3], map[string]any{"i": i}))
	}
	list := func(f queue.TaskFilter) []int64 {
		t.Helper()
		tasks, err := b.tm.List(b.ctx, f)
		requireNoError(t, err)
		var out []int64
		for _, task := range tasks {
			out = append(out, task.ID)
		}
		return out
	}
	cases := []struct {
		f    queue.TaskFilter
		want []int64
	}{
		{queue.TaskFilter{}, ids},
		{queue.TaskFilter{Name: "a"}, []int64{ids[0], ids[2], ids[4], ids[6]}},
		{queue.TaskFilter{Key: "K"}, []int64{ids[0], ids[3], ids[6]}},
		{queue.TaskFilter{Name: "b", Key: "K"}, []int64{ids[3]}},
		{queue.TaskFilter{States: []queue.TaskState{queue.TaskDone}}, nil},
		{queue.TaskFilter{Limit: 3}, ids[:3]},
		{queue.TaskFilter{Limit: 3, AfterID: ids[2]}, ids[3:6]},
		{queue.TaskFilter{AfterID: ids[5]}, ids[6:]},
		{queue.TaskFilter{NewestFirst: true, Limit: 3}, []int64{ids[6], ids[5], ids[4]}},
		{queue.TaskFilter{NewestFirst: true, Limit: 2, BeforeID: ids[4]}, []int64{ids[3], ids[2]}},
		{queue.TaskFilter{NewestFirst: true, Key: "K", AfterID: ids[5]}, []int64{ids[6], ids[3], ids[0]}},
	}
	for _, c := range cases {
		if got := list(c.f); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Fatalf("list %+v: %v, want %v", c.f, got, c.want)
		}
	}
	tasks, err := b.tm.List(b.ctx, queue.TaskFilter{Key: "L", Limit: 1})
	requireNoError(t, err)
	// The first task of L, superseded as the next task of L was added.
	if len(tasks) != 1 || tasks[0].Data["i"] != float64(1) || tasks[0].Name != "b" ||
		tasks[0].State != queue.TaskSuperseded || tasks[0].SupersededBy != ids[4] {
		t.Fatalf("list read %+v", tasks)
	}
}

// Hostile or malformed schema and table names are refused before any SQL
// runs.
func TestIdentifiersValidated(t *testing.T) {
	t.Parallel()
	dsn := queuetest.NewDSN(t)
	db, err := sql.Open("postgres", dsn)
	requireNoError(t, err)
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE y (a int); CREATE TABLE x (a int)`); err != nil {
		t.Fatal(err)
	}
	objects := func() int {
		var n int
		requireNoError(t, db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast'))
			+ (SELECT count(*) FROM pg_namespace)`).Scan(&n))
		return n
	}
	before := objects()

	bad := []string{
		"x; DROP TABLE y",
		"Robert'); --",
		`"quoted"`,
		"Upper",
		"MESSAGE_QUEUE",
		"",
		strings.Repeat("a", 41),
		"1starts_with_digit",
		"has space",
		"has-dash",
		"dot.ted",
		"ünïcode",
		"nul\x00byte",
	}
	for _, name := range bad {
		for _, opt := range []struct {
			what string
			opt  queue.PostgresOption
		}{{"schema", queue.WithSchema(name)}, {"table", queue.WithTable(name)}} {
			d, err := queue.OpenPostgres(dsn, opt.opt)
			if d != nil || !errors.Is(err, queue.ErrInvalidIdentifier) {
				t.Fatalf("OpenPostgres with %s %q: driver %v, error %v; want ErrInvalidIdentifier", opt.what, name, d, err)
			}
			d, err = queue.NewPostgresDriverFromDB(db, opt.opt)
			if d != nil || !errors.Is(err, queue.ErrInvalidIdentifier) {
				t.Fatalf("NewPostgresDriverFromDB with %s %q: driver %v, error %v; want ErrInvalidIdentifier", opt.what, name, d, err)
			}
		}
	}
	if after := objects(); after != before {
		t.Fatalf("database objects went from %d to %d", before, after)
	}
	if !tableExists(t, ctx, db, "public", "y") {
		t.Fatal("table y was dropped")
	}

	// The longest and the oddest accepted names work end to end.
	for _, opts := range [][]queue.PostgresOption{
		{queue.WithSchema(strings.Repeat("s", 40)), queue.WithTable(strings.Repeat("t", 40))},
		{queue.WithSchema("_x1"), queue.WithTable("select")}, // a keyword, quoted
	} {
		d, err := queue.NewPostgresDriverFromDB(db, opts...)
		requireNoError(t, err)
		requireNoError(t, d.Migrate(ctx))
		if !tableExists(t, ctx, db, d.Schema(), d.Table()) {
			t.Fatalf("%s.%s not created", d.Schema(), d.Table())
		}
		if _, err := queue.NewTaskManager(d).Add(ctx, "job", "K", nil); err != nil {
			t.Fatal(err)
		}
		got, err := d.Claim(ctx, queue.ClaimParams{Names: []string{"job"}, Limit: 1, Lease: time.Minute})
		if err != nil || len(got) != 1 {
			t.Fatalf("claim on %s.%s: %v %v", d.Schema(), d.Table(), claimedIDs(got), err)
		}
		if len(d.Channel()) > 63 {
			t.Fatalf("channel %q is longer than PostgreSQL allows", d.Channel())
		}
	}
}

func TestNewPostgresDriverFromDBKeepsCallersDB(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	d, err := queue.NewPostgresDriverFromDB(db)
	requireNoError(t, err)
	requireNoError(t, d.Migrate(context.Background()))
	requireNoError(t, d.Close())
	if err := db.Ping(); err != nil {
		t.Fatalf("the caller's *sql.DB was closed: %v", err)
	}
	if d, err := queue.NewPostgresDriverFromDB(nil); d != nil || err == nil {
		t.Fatal("nil *sql.DB accepted")
	}
}

// The original constructor connects with separate credentials and returns a
// migrated driver.
func TestNewPostgresDriverSeedForm(t *testing.T) {
	t.Parallel()
	dsn := queuetest.NewDSN(t)
	user, pass, host, dbname, ok := splitDSN(dsn)
	if !ok {
		t.Skipf("cannot split %s into the original constructor's arguments", queue.RedactDSN(dsn))
	}
	d, err := queue.NewPostgresDriver(user, pass, host, dbname, "seed_queue")
	requireNoError(t, err)
	defer d.Close()
	if d.Schema() != "public" || d.Table() != "seed_queue" {
		t.Fatalf("driver on %s.%s, want public.seed_queue", d.Schema(), d.Table())
	}
	tm := queue.NewTaskManager(d)
	requireNoError(t, tm.AddTask("exampleTask", "myKey", map[string]interface{}{"testData": true}))
	var data string
	requireNoError(t, d.DB().QueryRow(`SELECT data::text FROM public.seed_queue WHERE task_key = 'myKey'`).Scan(&data))
	if data != `{"testData": true}` {
		t.Fatalf("stored data %s", data)
	}

	// A wrong password is reported without the password.
	if pass == "" && strings.HasPrefix(host, "/") {
		return // trust authentication: any password is accepted
	}
	_, err = queue.NewPostgresDriver(user, "wrong-secret-pw", host, dbname, "")
	if err == nil || strings.Contains(err.Error(), "wrong-secret-pw") {
		t.Fatalf("wrong password: error %v", err)
	}
}

// splitDSN takes apart the connection strings queuetest hands out.
func splitDSN(dsn string) (user, pass, host, dbname string, ok bool) {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		pass, _ = u.User.Password()
		return u.User.Username(), pass, u.Host, strings.TrimPrefix(u.Path, "/"), true
	}
	kv := map[string]string{}
	for _, f := range strings.Fields(dsn) {
		k, v, found := strings.Cut(f, "=")
		if !found || strings.ContainsAny(v, `'\`) {
			return "", "", "", "", false
		}
		kv[k] = v
	}
	host = kv["host"]
	if kv["port"] != "" {
		host += ":" + kv["port"]
	}
	return kv["user"], kv["password"], host, kv["dbname"], true
}

// Connection strings with a password never echo it in errors.
func TestOpenPostgresDoesNotEchoPassword(t *testing.T) {
	t.Parallel()
	const secret = "s3cretpw"
	malformed := []string{
		"postgres://bob:" + secret + "@host:notaport/db",
		"postgres://bob:" + secret + "%zz@host/db",
		"postgres://bob:" + secret + "/x@host/db",
		"postgres://bob@host/db?password=" + secret + "&sslmode=bogus",
		"user=bob password=" + secret + " host=x sslmode=bogus",
		"user=bob password='" + secret + " host=x",
		"user=bob password=" + secret + " host=x port=abc",
		"bob password=" + secret,
	}
	for _, dsn := range malformed {
		d, err := queue.OpenPostgres(dsn)
		if err == nil {
			d.Close()
			t.Fatalf("OpenPostgres(%q): no error", dsn)
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("OpenPostgres(%q): error shows the password: %v", dsn, err)
		}
	}

	// Well-formed but unreachable: the error comes at first use.
	for _, dsn := range []string{
		"host=/nonexistent-esync user=bob password=" + secret + " dbname=x sslmode=disable connect_timeout=2",
		"postgres://bob:" + secret + "@127.0.0.1:1/x?sslmode=disable&connect_timeout=2",
	} {
		d, err := queue.OpenPostgres(dsn)
		requireNoError(t, err)
		err = d.Migrate(context.Background())
		d.Close()
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Fatalf("Migrate on %s: error %v", queue.RedactDSN(dsn), err)
		}
	}
}

func TestRedactDSN(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"postgres://bob:s3cret@db.example.com:5432/app?sslmode=require", "postgres://bob:xxxxx@db.example.com:5432/app?sslmode=require"},
		{"postgresql://bob:p%40ss%2Fword@host/app", "postgresql://bob:xxxxx@host/app"},
		{"postgres://host/app?password=s3cret&user=bob", "postgres://host/app?password=xxxxx&user=bob"},
		{"postgres://bob@host/app", "postgres://bob@host/app"},
		{"host=db user=bob password=s3cret dbname=app", "host=db user=bob password=xxxxx dbname=app"},
		{"host=db password='s3 cret \\' x' dbname=app", "host=db password=xxxxx dbname=app"},
		{"host=db PASSWORD = s3cret", "host=db PASSWORD = xxxxx"},
		{"host=db user=bob dbname=app", "host=db user=bob dbname=app"},
		// URLs that do not parse still lose their password.
		{"postgres://bob:s3cret@host:badport/db", "postgres://bob:xxxxx@host:badport/db"},
		{"postgres://bob:p%zzword@host/db", "postgres://bob:xxxxx@host/db"},
	}
	for _, c := range cases {
		if got := queue.RedactDSN(c.in); got != c.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestPreparedStatements(t *testing.T) {
	t.Parallel()
	dsn := queuetest.NewDSN(t)
	for _, on := range []bool{true, false} {
		db, err := sql.Open("postgres", dsn)
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(1) // the statements below see the driver's connection
		d, err := queue.NewPostgresDriverFromDB(db, queue.WithTable(fmt.Sprintf("prepared_%t", on)), queue.WithPreparedStatements(on))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := d.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		tm := queue.NewTaskManager(d)
		for i := range 3 {
			if _, err := tm.Add(ctx, "job", fmt.Sprint("k", i), nil); err != nil {
				t.Fatal(err)
			}
			got, err := d.Claim(ctx, queue.ClaimParams{Names: []string{"job"}, Limit: 1, Lease: time.Minute})
			if err != nil || len(got) != 1 {
				t.Fatalf("prepared=%t: claim: %d tasks, %v", on, len(got), err)
			}
			lost, err := d.Finish(ctx, []queue.Completion{{Lease: got[0].Lease, State: queue.TaskDone}})
			if err != nil || len(lost) != 0 {
				t.Fatalf("prepared=%t: finish: lost %v, %v", on, lost, err)
			}
		}
		var prepared int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_prepared_statements
			WHERE statement LIKE '%_claim"(%' OR statement LIKE '%_add"(%' OR statement LIKE '%_finish"(%'`).Scan(&prepared); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: 3, false: 0}[on]; prepared != want {
			t.Errorf("prepared=%t: %d of the insert, claim and finish statements are prepared on the connection, want %d", on, prepared, want)
		}
		d.Close()
		db.Close()
	}
}

// TestTaskTimesMatchTheRow: the times of a claimed or read task are the
// stored ones, to the microsecond, over tasks whose times differ in every
// digit of their microseconds.
func TestTaskTimesMatchTheRow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	specs := make([]queue.TaskSpec, 300)
	for i := range specs {
		specs[i] = queue.TaskSpec{Name: "job", Key: fmt.Sprint("k", i)}
	}
	if _, err := b.tm.AddMany(b.ctx, specs); err != nil {
		t.Fatal(err)
	}
	for _, c := range b.claimLease(t, 300, time.Minute) {
		// Microseconds that differ from task to task.
		if _, err := b.db.ExecContext(b.ctx, `UPDATE `+b.table+` SET created_at = created_at - make_interval(secs => $2 * 0.000001)
			WHERE id = $1`, c.ID, c.ID*7919%1000000); err != nil {
			t.Fatal(err)
		}
		b.finish(t, c, queue.TaskDone, 0)
	}
	tasks, err := b.tm.List(b.ctx, queue.TaskFilter{Limit: 1000})
	requireNoError(t, err)
	if len(tasks) != 300 {
		t.Fatalf("listed %d tasks, want 300", len(tasks))
	}
	for _, task := range tasks {
		var created, doAfter, attempted, finished time.Time
		if err := b.db.QueryRowContext(b.ctx, `SELECT created_at, do_after, last_attempted, finished_at FROM `+b.table+` WHERE id = $1`, task.ID).
			Scan(&created, &doAfter, &attempted, &finished); err != nil {
			t.Fatal(err)
		}
		if !task.Created.Equal(created) || !task.RunAfter.Equal(doAfter) || !task.LastAttempted.Equal(attempted) || !task.FinishedAt.Equal(finished) {
			t.Fatalf("task %d times %s %s %s %s, stored %s %s %s %s", task.ID,
				task.Created, task.RunAfter, task.LastAttempted, task.FinishedAt, created, doAfter, attempted, finished)
		}
	}
	id := b.add(t, "job", "K", nil)
	c := b.claimOne(t)
	var expires time.Time
	if err := b.db.QueryRowContext(b.ctx, `SELECT lease_expires_at FROM `+b.table+` WHERE id = $1`, id).Scan(&expires); err != nil {
		t.Fatal(err)
	}
	if !c.Lease.Expires.Equal(expires) {
		t.Fatalf("lease expires %s, stored %s", c.Lease.Expires, expires)
	}
}
