package exampledb_test

import (
	"bytes"
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/esync/queue/examples/internal/exampledb"
	"github.com/esync/queue/examples/internal/userdb"
)

// A place is a database when the role may create one and a schema
// otherwise; unqualified tables and the queue land in it, each Open gets a
// new one, Close drops it, and keep keeps it.
func TestPlace(t *testing.T) {
	ctx := context.Background()
	for _, restricted := range []bool{false, true} {
		user := userdb.New(t, restricted)
		t.Setenv("DATABASE_URL", user.DSN)
		want := exampledb.Database
		if restricted {
			want = exampledb.Schema
		}
		var log bytes.Buffer
		p, err := exampledb.Open(ctx, "demo", false, &log)
		if err != nil {
			t.Fatal(err)
		}
		if p.Kind != want || !strings.HasPrefix(p.Name, exampledb.Prefix+"demo_") || !strings.Contains(log.String(), p.Name) {
			t.Fatalf("restricted %v: place %+v, log %q", restricted, p, log.String())
		}
		other, err := exampledb.Open(ctx, "demo", false, &log)
		if err != nil {
			t.Fatal(err)
		}
		if other.Name == p.Name {
			t.Fatalf("two runs share the place %s", p.Name)
		}
		d, err := p.OpenDriver(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d.Schema() != p.Schema {
			t.Fatalf("queue in schema %s, place's schema %s", d.Schema(), p.Schema)
		}
		db, err := p.OpenDB()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`CREATE TABLE customer (id int); INSERT INTO customer VALUES (1)`); err != nil {
			t.Fatal(err)
		}
		if err := d.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if err := other.Close(); err != nil {
			t.Fatal(err)
		}
		user.RequireUntouched(t)

		kept, err := exampledb.Open(ctx, "demo", true, &log)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(log.String(), "kept at the end") {
			t.Fatalf("log does not say the place is kept: %q", log.String())
		}
		if err := kept.Close(); err != nil {
			t.Fatal(err)
		}
		admin, err := sql.Open("postgres", user.DSN)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := admin.QueryRow(`SELECT (SELECT count(*) FROM pg_database WHERE datname = $1) + (SELECT count(*) FROM pg_namespace WHERE nspname = $1)`, kept.Name).Scan(&n); err != nil || n != 1 {
			t.Fatalf("kept place %s: %d found (%v)", kept.Name, n, err)
		}
		drop := "DROP DATABASE " + kept.Name
		if restricted {
			drop = "DROP SCHEMA " + kept.Name + " CASCADE"
		}
		if _, err := admin.Exec(drop); err != nil {
			t.Fatal(err)
		}
		admin.Close()
	}
	t.Setenv("DATABASE_URL", "host=x password='s3cret")
	if _, err := exampledb.Open(ctx, "demo", false, nil); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("a DATABASE_URL that does not parse: %v", err)
	}
	if _, err := exampledb.Open(ctx, "Bad-Name", false, nil); err == nil {
		t.Fatal("an example name with capitals and a dash was accepted")
	}
}
