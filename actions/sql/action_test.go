package sqlaction_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
	sqlaction "github.com/esync/queue/actions/sql"
	"github.com/esync/queue/queuetest"
)

func TestUpdateBindsParameterFromTaskData(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	mustExec(t, db,
		`CREATE TABLE customer (id bigint PRIMARY KEY, synced_at timestamptz)`,
		`INSERT INTO customer (id) VALUES (1), (2), (3)`)
	a, err := sqlaction.New(db, `UPDATE customer SET synced_at = now() WHERE id = :customer_id`)
	if err != nil {
		t.Fatal(err)
	}
	res, msg := a.Do(task(t, `{"customer_id": 2, "ignored": "x"}`))
	wantResult(t, res, msg, queue.TaskResultSuccess, "1 row affected")

	var synced []int64
	rows, err := db.Query(`SELECT id FROM customer WHERE synced_at IS NOT NULL ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		synced = append(synced, id)
	}
	if len(synced) != 1 || synced[0] != 2 {
		t.Fatalf("synced customers %v, want [2]", synced)
	}
}

func TestLargeIntegerKeepsEveryDigit(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	mustExec(t, db, `CREATE TABLE big (id bigint PRIMARY KEY)`)
	a, err := sqlaction.New(db, `INSERT INTO big (id) VALUES (:id)`)
	if err != nil {
		t.Fatal(err)
	}
	// 2^53+1 has no float64 form; a float round trip would store ...992.
	res, msg := a.Do(task(t, `{"id": 9007199254740993}`))
	wantResult(t, res, msg, queue.TaskResultSuccess)
	var got int64
	if err := db.QueryRow(`SELECT id FROM big`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != 9007199254740993 {
		t.Fatalf("stored %d, want 9007199254740993", got)
	}
}

func TestDataWithoutRawDataIsUsed(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	mustExec(t, db, `CREATE TABLE note (body text)`)
	a, err := sqlaction.New(db, `INSERT INTO note (body) VALUES (:body)`)
	if err != nil {
		t.Fatal(err)
	}
	tk := queue.Task{Name: "n", Key: "k", Data: map[string]interface{}{"body": "from Data"}}
	res, msg := a.Do(tk)
	wantResult(t, res, msg, queue.TaskResultSuccess)
	var body string
	if err := db.QueryRow(`SELECT body FROM note`).Scan(&body); err != nil {
		t.Fatal(err)
	}
	if body != "from Data" {
		t.Fatalf("stored %q", body)
	}
}

func TestMissingParameterFailsAndRunsNothing(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	mustExec(t, db, `CREATE TABLE note (body text, author text)`)
	a, err := sqlaction.New(db, `INSERT INTO note (body, author) VALUES (:body, :author)`)
	if err != nil {
		t.Fatal(err)
	}
	res, msg := a.Do(task(t, `{"body": "hello"}`))
	wantResult(t, res, msg, queue.TaskResultPermanentFailure, "missing parameter author")

	res, msg = a.Do(task(t, `{"other": 1}`))
	wantResult(t, res, msg, queue.TaskResultPermanentFailure, "missing parameters body, author")

	var n int
	if err := db.QueryRow(`SELECT count(*) FROM note`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d rows inserted, want none", n)
	}
}

func TestHostileValueIsStoredVerbatim(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	mustExec(t, db, `CREATE TABLE x (body text)`)
	a, err := sqlaction.New(db, `INSERT INTO x (body) VALUES (:body)`)
	if err != nil {
		t.Fatal(err)
	}
	hostile := []string{
		`'; DROP TABLE x; --`,
		`$1 :body :: $$ $tag$ " \' \\`,
		"multi\nline'); DELETE FROM x; --",
	}
	for _, h := range hostile {
		tk := queue.Task{Name: "n", Key: "k", Data: map[string]interface{}{"body": h}}
		res, msg := a.Do(tk)
		wantResult(t, res, msg, queue.TaskResultSuccess)
	}
	rows, err := db.Query(`SELECT body FROM x`)
	if err != nil {
		t.Fatalf("table x is gone or unreadable: %v", err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	if len(got) != len(hostile) {
		t.Fatalf("stored %q, want %q", got, hostile)
	}
	for i := range got {
		if got[i] != hostile[i] {
			t.Errorf("row %d: stored %q, want %q", i, got[i], hostile[i])
		}
	}
}

func TestCastsQuotesAndJSONReachTheServerIntact(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	mustExec(t, db, `CREATE TABLE doc (body text, n int, payload jsonb, flag boolean, note text)`)
	a, err := sqlaction.New(db, `
		INSERT INTO doc (body, n, payload, flag, note) -- :not_a_param
		VALUES (:body || ' :x ' || ':y'::text, :n::int + 1, :payload::jsonb, :flag, :note)`)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(a.Params(), ","); got != "body,n,payload,flag,note" {
		t.Fatalf("params %s", got)
	}
	res, msg := a.Do(task(t, `{"body": "hi", "n": "6", "payload": {"a": [1, 2.5, "z"]}, "flag": true, "note": null}`))
	wantResult(t, res, msg, queue.TaskResultSuccess, "1 row affected")

	var (
		body, payload string
		n             int
		flag          bool
		note          sql.NullString
	)
	err = db.QueryRow(`SELECT body, n, payload::text, flag, note FROM doc`).Scan(&body, &n, &payload, &flag, &note)
	if err != nil {
		t.Fatal(err)
	}
	if body != "hi :x :y" || n != 7 || payload != `{"a": [1, 2.5, "z"]}` || !flag || note.Valid {
		t.Fatalf("stored body=%q n=%d payload=%s flag=%v note=%v", body, n, payload, flag, note)
	}
}

func TestStatementRunsInOneTransaction(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	mustExec(t, db,
		`CREATE TABLE note (body text)`,
		`CREATE TABLE uniq (id int PRIMARY KEY)`,
		`INSERT INTO uniq VALUES (1)`)
	// Without parameters lib/pq sends the text as one simple query, so two
	// statements run; the failing second must take the first with it.
	a, err := sqlaction.New(db, `INSERT INTO note VALUES ('first'); INSERT INTO uniq VALUES (1)`)
	if err != nil {
		t.Fatal(err)
	}
	res, msg := a.Do(task(t, `{}`))
	wantResult(t, res, msg, queue.TaskResultPermanentFailure, "23505")
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM note`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("the first statement committed (%d rows) although the second failed", n)
	}
}

func TestPermanentErrorsFailWithTheServerMessage(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	mustExec(t, db,
		`CREATE TABLE customer (id int PRIMARY KEY, email text UNIQUE, n int)`,
		`INSERT INTO customer VALUES (1, 'taken@example.com', 0)`)
	cases := []struct {
		name  string
		stmt  string
		data  string
		parts []string
	}{
		{"syntax error", `UPDAT customer SET n = 1 WHERE id = :id`, `{"id": 1}`,
			[]string{"42601", "syntax_error", `syntax error at or near "UPDAT"`}},
		{"undefined table", `UPDATE nosuch SET n = 1 WHERE id = :id`, `{"id": 1}`,
			[]string{"42P01", `relation "nosuch" does not exist`}},
		{"undefined column", `UPDATE customer SET nosuch = 1 WHERE id = :id`, `{"id": 1}`,
			[]string{"42703", "nosuch"}},
		{"unique violation", `INSERT INTO customer (id, email) VALUES (:id, :email)`, `{"id": 2, "email": "taken@example.com"}`,
			[]string{"23505", "unique_violation", "customer_email_key", "detail: Key (email)=(taken@example.com) already exists."}},
		{"not null violation", `INSERT INTO customer (id) VALUES (:id)`, `{"id": null}`,
			[]string{"23502"}},
		{"bad data type", `UPDATE customer SET n = :n WHERE id = 1`, `{"n": "abc"}`,
			[]string{"22P02", `invalid input syntax for type integer: "abc"`}},
		{"out of range", `UPDATE customer SET n = :n WHERE id = 1`, `{"n": 99999999999}`,
			[]string{"22003"}},
		{"NUL byte in text", `UPDATE customer SET email = :email WHERE id = 1`, `{"email": "a\u0000b"}`,
			[]string{"22021"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := sqlaction.New(db, tc.stmt)
			if err != nil {
				t.Fatal(err)
			}
			res, msg := a.Do(task(t, tc.data))
			wantResult(t, res, msg, queue.TaskResultPermanentFailure, tc.parts...)
		})
	}
	var email string
	var n int
	if err := db.QueryRow(`SELECT email, n FROM customer WHERE id = 1`).Scan(&email, &n); err != nil {
		t.Fatal(err)
	}
	if email != "taken@example.com" || n != 0 {
		t.Fatalf("a failed statement changed the row: email=%q n=%d", email, n)
	}
}

func TestPermissionDeniedFailsWithoutLeakingThePassword(t *testing.T) {
	t.Parallel()
	dsn := queuetest.NewDSN(t)
	admin, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	role := "esync_limited_" + randomHex(t, 4)
	password := "pw" + randomHex(t, 12)
	mustExec(t, admin,
		`CREATE TABLE secret (id int PRIMARY KEY, n int)`,
		`INSERT INTO secret VALUES (1, 0)`,
		`CREATE ROLE `+role+` LOGIN PASSWORD '`+password+`'`)
	t.Cleanup(func() {
		if _, err := admin.Exec(`DROP ROLE IF EXISTS ` + role); err != nil {
			t.Errorf("drop role: %v", err)
		}
	})
	limited, err := sql.Open("postgres", withUser(dsn, role, password))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { limited.Close() })

	a, err := sqlaction.New(limited, `UPDATE secret SET n = n + 1 WHERE id = :id`)
	if err != nil {
		t.Fatal(err)
	}
	res, msg := a.Do(task(t, `{"id": 1}`))
	wantResult(t, res, msg, queue.TaskResultPermanentFailure, "42501", "permission denied")
	if strings.Contains(string(msg), password) {
		t.Fatalf("message %q contains the role's password", msg)
	}
}

func TestLockTimeoutRetries(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	mustExec(t, db, `CREATE TABLE acct (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)`, `INSERT INTO acct (id) VALUES (1)`)

	holder, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback()
	mustExec(t, holder, `UPDATE acct SET v = 100 WHERE id = 1`)

	a, err := sqlaction.New(db, `UPDATE acct SET v = v + 1 WHERE id = :id`, sqlaction.WithLockTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	// The row lock is held until after Do returns, so only lock_timeout can
	// end the wait (the task's deadline only keeps a broken build from
	// hanging, and would end it with a different SQLSTATE).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, msg := a.Do(task(t, `{"id": 1}`).WithContext(ctx))
	wantResult(t, res, msg, queue.TaskResultRetryFailure, "55P03", "lock_not_available")
}

func TestTimeoutsAreSetForTheTransactionOnly(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	db.SetMaxOpenConns(1) // so the check below reuses the action's connection
	mustExec(t, db, `CREATE TABLE seen (statement_timeout text, lock_timeout text, within_30s boolean)`)
	a, err := sqlaction.New(db, `INSERT INTO seen SELECT current_setting('statement_timeout'),
		current_setting('lock_timeout'), current_setting('statement_timeout')::interval <= interval '30 seconds'`,
		sqlaction.WithTimeout(90*time.Second), sqlaction.WithLockTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	res, msg := a.Do(task(t, `{}`))
	wantResult(t, res, msg, queue.TaskResultSuccess)

	// A task deadline sooner than the configured timeout lowers it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, msg = a.Do(task(t, `{}`).WithContext(ctx))
	wantResult(t, res, msg, queue.TaskResultSuccess)

	rows, err := db.Query(`SELECT statement_timeout, lock_timeout, within_30s FROM seen`)
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		statement, lock string
		within30s       bool
	}
	var got []seen
	for rows.Next() {
		var s seen
		if err := rows.Scan(&s.statement, &s.lock, &s.within30s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	rows.Close()
	if len(got) != 2 || got[0].statement != "90s" || got[0].lock != "5s" {
		t.Fatalf("settings seen by the statement: %+v, want 90s and 5s first", got)
	}
	if !got[1].within30s || got[1].statement == "0" || got[1].lock != "5s" {
		t.Fatalf("settings under a 30s task deadline: %+v, want a statement timeout of at most 30s", got[1])
	}
	var st, lt string
	if err := db.QueryRow(`SELECT current_setting('statement_timeout'), current_setting('lock_timeout')`).Scan(&st, &lt); err != nil {
		t.Fatal(err)
	}
	if st != "0" || lt != "0" {
		t.Fatalf("settings leaked to the pooled connection: statement_timeout=%s lock_timeout=%s", st, lt)
	}
}

func TestStatementTimeoutRetries(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	a, err := sqlaction.New(db, `SELECT pg_sleep(:secs)`, sqlaction.WithTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	res, msg := a.Do(task(t, `{"secs": 600}`))
	wantResult(t, res, msg, queue.TaskResultRetryFailure)
	if !strings.Contains(string(msg), "57014") && !strings.Contains(string(msg), "timed out") {
		t.Fatalf("message %q names neither 57014 nor a timeout", msg)
	}
}

func TestTaskDeadlineBoundsTheStatement(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	mustExec(t, db, `CREATE TABLE note (body text)`)
	a, err := sqlaction.New(db, `INSERT INTO note SELECT :body FROM pg_sleep(600)`)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res, msg := a.Do(task(t, `{"body": "late"}`).WithContext(ctx))
	wantResult(t, res, msg, queue.TaskResultRetryFailure)
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM note`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatal("a statement cut off by the deadline committed")
	}

	// A task whose deadline has already passed is not started.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	res, msg = a.Do(task(t, `{"body": "never"}`).WithContext(ctx))
	wantResult(t, res, msg, queue.TaskResultRetryFailure, "cancelled")
}

func TestDeadlockRetries(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	mustExec(t, db,
		`CREATE TABLE acct (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)`,
		`INSERT INTO acct (id) VALUES (1), (2)`,
		// lock_pair locks row first, waits until another session is blocked
		// behind that lock, then asks for row second.
		`CREATE FUNCTION lock_pair(first int, second int) RETURNS void LANGUAGE plpgsql AS $$
		BEGIN
			UPDATE acct SET v = v + 1 WHERE id = first;
			WHILE NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE pg_backend_pid() = ANY (pg_blocking_pids(a.pid))) LOOP
				PERFORM pg_sleep(0.01);
			END LOOP;
			UPDATE acct SET v = v + 1 WHERE id = second;
		END $$`)

	// The other transaction holds row 1 and will wait for row 2. Its own
	// deadlock check is put off for an hour so that the action's check (after
	// the default deadlock_timeout of 1s) is the one that finds the cycle.
	other, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback()
	mustExec(t, other, `SET LOCAL deadlock_timeout = '1h'`, `UPDATE acct SET v = 100 WHERE id = 1`)

	a, err := sqlaction.New(db, `SELECT lock_pair(:first, :second)`, sqlaction.WithTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	done := doAsync(a, task(t, `{"first": 2, "second": 1}`))
	// The action holds row 2 once it sleeps in lock_pair's loop.
	waitUntil(t, db, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
		WHERE query LIKE 'SELECT lock_pair%' AND wait_event = 'PgSleep')`)
	otherDone := make(chan error, 1)
	go func() {
		_, err := other.Exec(`UPDATE acct SET v = 200 WHERE id = 2`)
		otherDone <- err
	}()

	r := <-done
	wantResult(t, r.res, r.msg, queue.TaskResultRetryFailure, "40P01", "deadlock detected")
	if err := <-otherDone; err != nil {
		t.Fatalf("the other transaction failed instead: %v", err)
	}
}

func TestSerializationFailureRetries(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	mustExec(t, db, `CREATE TABLE acct (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)`, `INSERT INTO acct (id) VALUES (1)`)

	other, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback()
	var otherPID int
	if err := other.QueryRow(`SELECT pg_backend_pid()`).Scan(&otherPID); err != nil {
		t.Fatal(err)
	}
	mustExec(t, other, `UPDATE acct SET v = 10 WHERE id = 1`)

	a, err := sqlaction.New(db, `UPDATE acct SET v = v + 1 WHERE id = :id`, sqlaction.WithIsolation(sql.LevelSerializable))
	if err != nil {
		t.Fatal(err)
	}
	done := doAsync(a, task(t, `{"id": 1}`))
	// Once the action's SERIALIZABLE transaction waits for the row, its
	// snapshot predates the other commit: the update cannot be serialized.
	waitUntil(t, db, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE $1 = ANY (pg_blocking_pids(a.pid)))`, otherPID)
	if err := other.Commit(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	wantResult(t, r.res, r.msg, queue.TaskResultRetryFailure, "40001", "could not serialize access")

	var v int
	if err := db.QueryRow(`SELECT v FROM acct WHERE id = 1`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != 10 {
		t.Fatalf("v = %d, want 10 (the failed update must not apply)", v)
	}
}

func TestTerminatedBackendRetriesAndThePoolRecovers(t *testing.T) {
	t.Parallel()
	db := queuetest.NewDB(t)
	admin := queuetest.NewDB(t) // another database on the same server
	a, err := sqlaction.New(db, `SELECT pg_sleep(600) /* terminate me */`)
	if err != nil {
		t.Fatal(err)
	}
	done := doAsync(a, task(t, `{}`))
	const find = `SELECT pid FROM pg_stat_activity
		WHERE query LIKE 'SELECT pg_sleep(600) /* terminate me */%' AND pid <> pg_backend_pid()`
	waitUntil(t, admin, `SELECT EXISTS (`+find+`)`)
	var terminated bool
	if err := admin.QueryRow(`SELECT pg_terminate_backend(pid) FROM (` + find + `) s`).Scan(&terminated); err != nil || !terminated {
		t.Fatalf("pg_terminate_backend: %v %v", terminated, err)
	}
	r := <-done
	wantResult(t, r.res, r.msg, queue.TaskResultRetryFailure)

	// The broken connection is discarded; the next run gets a good one.
	ok, err := sqlaction.New(db, `SELECT 1`)
	if err != nil {
		t.Fatal(err)
	}
	res, msg := ok.Do(task(t, `{}`))
	wantResult(t, res, msg, queue.TaskResultSuccess)
}
