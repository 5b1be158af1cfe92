// Package userdb gives the examples' tests a database as a user of esync
// has it: a queue of their own in public.message_queue with pending tasks
// (of the names and keys the examples use, too) and a customer table. After
// an example ran against it, RequireUntouched proves the example left all of
// it as it was, and left no database or schema of its own behind.
package userdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/esync/queue"
	"github.com/esync/queue/examples/internal/exampledb"
	"github.com/esync/queue/queuetest"
)

// Database is a user's database made for a test.
type Database struct {
	// DSN connects as the user; set it as DATABASE_URL for the example.
	DSN string
	// Restricted says the user's role may not create databases.
	Restricted bool

	admin    string // DSN of a superuser on the same database
	snapshot string
}

// New makes a fresh database with the user's data. With restricted, the
// data belongs to a role that may not create databases but may create
// schemas in its own database, and DSN connects as that role: an example
// then has to work in a schema of its own.
func New(t testing.TB, restricted bool) *Database {
	t.Helper()
	admin := queuetest.NewDSN(t)
	u := &Database{DSN: admin, Restricted: restricted, admin: admin}
	if restricted {
		u.DSN = restrictedRole(t, admin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := queue.OpenPostgres(u.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	tm := queue.NewTaskManager(d)
	if _, err := tm.AddMany(ctx, []queue.TaskSpec{
		{Name: "crm.update", Key: "customers:1", Data: map[string]any{"mine": "the user's own update"}},
		{Name: "crm.create", Key: "customers:2", Data: map[string]any{"mine": true}},
		{Name: "crm.delete", Key: "customers:3"},
		{Name: "customer.sync", Key: "customer:7", Data: map[string]any{"version": 99}},
		{Name: "email", Key: "welcome:ann"},
		{Name: "exampleTask", Key: "myKey"},
		{Name: "report", Key: "report:later", Options: []queue.AddOption{queue.WithDelay(time.Hour)}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DB().ExecContext(ctx, `
CREATE TABLE customer (id integer PRIMARY KEY, name text NOT NULL, email text NOT NULL, tier text NOT NULL);
INSERT INTO customer VALUES (1, 'Ada (the user''s)', 'ada@user.example', 'gold'), (2, 'Bo', 'bo@user.example', 'free'),
	(3, 'Cy', 'cy@user.example', 'pro');
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customer, amount numeric(12,2) NOT NULL);
INSERT INTO orders (customer_id, amount) VALUES (1, 10.50), (2, 3.25);`); err != nil {
		t.Fatal(err)
	}
	u.snapshot = u.dump(t)
	return u
}

// RequireUntouched fails the test unless the database holds exactly what
// New put there and no example's database or schema is left on the server.
func (u *Database) RequireUntouched(t testing.TB) {
	t.Helper()
	if now := u.dump(t); now != u.snapshot {
		t.Fatalf("the user's database changed.\nbefore:\n%s\nafter:\n%s", u.snapshot, now)
	}
	db := open(t, u.admin)
	defer db.Close()
	var left []string
	rows, err := db.Query(`SELECT 'database ' || datname FROM pg_database WHERE starts_with(datname, $1)
UNION ALL SELECT 'schema ' || nspname FROM pg_namespace WHERE starts_with(nspname, $1)`, exampledb.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		left = append(left, s)
	}
	if len(left) > 0 {
		t.Fatalf("the example left %s behind", strings.Join(left, ", "))
	}
}

// dump is every row of every table of the database's own schemas, as text.
func (u *Database) dump(t testing.TB) string {
	t.Helper()
	db := open(t, u.admin)
	defer db.Close()
	rows, err := db.Query(`SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'
ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	type rel struct{ schema, name, kind string }
	var rels []rel
	for rows.Next() {
		var r rel
		if err := rows.Scan(&r.schema, &r.name, &r.kind); err != nil {
			t.Fatal(err)
		}
		rels = append(rels, r)
	}
	rows.Close()
	var b strings.Builder
	for _, r := range rels {
		fmt.Fprintf(&b, "%s.%s (%s)\n", r.schema, r.name, r.kind)
		if r.kind != "r" {
			continue
		}
		var data string
		q := `SELECT coalesce(string_agg(to_jsonb(t)::text, E'\n' ORDER BY to_jsonb(t)::text), '') FROM ` +
			pq.QuoteIdentifier(r.schema) + "." + pq.QuoteIdentifier(r.name) + " t"
		if err := db.QueryRow(q).Scan(&data); err != nil {
			t.Fatal(err)
		}
		b.WriteString(data + "\n")
	}
	var schemas string
	if err := db.QueryRow(`SELECT string_agg(nspname, ' ' ORDER BY nspname) FROM pg_namespace`).Scan(&schemas); err != nil {
		t.Fatal(err)
	}
	b.WriteString("schemas: " + schemas + "\n")
	return b.String()
}

// restrictedRole makes a role that may log in and create schemas (and, in
// public, tables) in the database of admin, but not databases, and returns
// a DSN connecting as it. The role and what it owns are dropped when the
// test ends.
func restrictedRole(t testing.TB, admin string) string {
	t.Helper()
	var b [4]byte
	rand.Read(b[:])
	role, password := "esync_user_"+hex.EncodeToString(b[:]), hex.EncodeToString(b[:])+"-pw"
	db := open(t, admin)
	defer db.Close()
	var dbname string
	if err := db.QueryRow(`SELECT current_database()`).Scan(&dbname); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE ROLE ` + pq.QuoteIdentifier(role) + ` NOLOGIN`); err != nil {
		var pqErr *pq.Error
		if errors.As(err, &pqErr) && pqErr.Code == "42501" {
			t.Skipf("userdb: the test database's role may not create roles, so no restricted user can be made: %v", err)
		}
		t.Fatal(err)
	}
	if _, err := db.Exec(fmt.Sprintf(`ALTER ROLE %[1]s LOGIN NOCREATEDB NOSUPERUSER PASSWORD %[2]s;
GRANT CONNECT, CREATE ON DATABASE %[3]s TO %[1]s;
GRANT CREATE, USAGE ON SCHEMA public TO %[1]s`, pq.QuoteIdentifier(role), pq.QuoteLiteral(password), pq.QuoteIdentifier(dbname))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db := open(t, admin)
		defer db.Close()
		if _, err := db.Exec(fmt.Sprintf(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s`, pq.QuoteLiteral(role))); err != nil {
			t.Error(err)
		}
		if _, err := db.Exec(fmt.Sprintf(`DROP OWNED BY %[1]s; DROP ROLE %[1]s`, pq.QuoteIdentifier(role))); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	if u, err := url.Parse(admin); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.User = url.UserPassword(role, password)
		return u.String()
	}
	return admin + " user=" + role + " password=" + password
}

func open(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	return db
}
