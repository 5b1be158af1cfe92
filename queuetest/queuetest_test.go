package queuetest

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewDSNGivesIsolatedDatabases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn1, dsn2 := NewDSN(t), NewDSN(t)
	if dsn1 == dsn2 {
		t.Fatalf("two NewDSN calls gave the same DSN %s", dsn1)
	}
	db1, db2 := openDB(t, dsn1), openDB(t, dsn2)
	name1, name2 := currentDatabase(t, db1), currentDatabase(t, db2)
	if name1 == name2 {
		t.Fatalf("both DSNs reach database %s", name1)
	}
	if _, err := db1.ExecContext(ctx, `CREATE TABLE only_here (a int); INSERT INTO only_here VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	var seen bool
	if err := db2.QueryRowContext(ctx, `SELECT to_regclass('public.only_here') IS NOT NULL`).Scan(&seen); err != nil {
		t.Fatal(err)
	}
	if seen {
		t.Fatal("a table created in one test database is visible in the other")
	}
}

// NewDriver's database exists while the test runs and is gone, with the
// driver closed, once the test (here a sub-test) has finished.
func TestNewDriverDatabaseDroppedAfterTest(t *testing.T) {
	t.Parallel()
	observer := openDB(t, NewDSN(t))
	exists := func(name string) bool {
		var n int
		if err := observer.QueryRow(`SELECT count(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}

	var name string
	var db *sql.DB
	t.Run("inner", func(t *testing.T) {
		d := NewDriver(t)
		db = d.DB()
		name = currentDatabase(t, db)
		if !exists(name) {
			t.Fatalf("database %s not listed while the test runs", name)
		}
		var migrated bool
		if err := db.QueryRow(`SELECT to_regclass('public.message_queue') IS NOT NULL`).Scan(&migrated); err != nil {
			t.Fatal(err)
		}
		if !migrated {
			t.Fatal("NewDriver's database is not migrated")
		}
	})
	if name == "" {
		t.Fatal("inner test did not run")
	}
	if exists(name) {
		t.Fatalf("database %s still exists after its test ended", name)
	}
	if err := db.Ping(); err == nil {
		t.Fatal("the driver's connection pool is still open after its test ended")
	}
}

func TestFindPostgresBin(t *testing.T) {
	dir, err := findPostgresBin()
	if err != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	for _, bin := range []string{"initdb", "postgres"} {
		if !isExecutable(filepath.Join(dir, bin)) {
			t.Fatalf("%s has no executable %s", dir, bin)
		}
	}

	// PGBIN wins when it holds both programs, and is passed over when not.
	fake := t.TempDir()
	for _, bin := range []string{"initdb", "postgres"} {
		if err := os.WriteFile(filepath.Join(fake, bin), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PGBIN", fake)
	if got, err := findPostgresBin(); err != nil || got != fake {
		t.Fatalf("with PGBIN=%s: %s %v", fake, got, err)
	}
	empty := t.TempDir()
	t.Setenv("PGBIN", empty)
	if got, err := findPostgresBin(); err != nil || got == empty {
		t.Fatalf("with PGBIN pointing at an empty folder: %s %v, want the real one", got, err)
	}
}

func TestWithDBName(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"postgres://u:p@h:5432/old?sslmode=disable", "postgres://u:p@h:5432/new?sslmode=disable"},
		{"postgresql://h/", "postgresql://h/new"},
		{"host=/tmp/x port=5432 user=postgres", "host=/tmp/x port=5432 user=postgres dbname=new"},
	}
	for _, c := range cases {
		if got := withDBName(c.in, "new"); got != c.want {
			t.Errorf("withDBName(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestStartedServerHandsOutDatabases(t *testing.T) {
	t.Parallel()
	s, err := sharedServer()
	if err != nil {
		t.Skip(err)
	}
	if s.Source == "" || !strings.Contains("env docker local", s.Source) {
		t.Fatalf("source %q", s.Source)
	}
	ctx := context.Background()
	name, dsn, err := s.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db := openDB(t, dsn)
	if got := currentDatabase(t, db); got != name {
		t.Fatalf("DSN reaches %s, want %s", got, name)
	}
	db.Close()
	if err := s.DropDatabase(ctx, name); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.admin.QueryRow(`SELECT count(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil || n != 0 {
		t.Fatalf("after DropDatabase: %d rows, %v", n, err)
	}
}

func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func currentDatabase(t *testing.T, db *sql.DB) string {
	t.Helper()
	var name string
	if err := db.QueryRow(`SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestServerStopStartTerminate: a server of the test's own can be stopped
// (connections fail), started again (the data survives crash recovery),
// restarted, and have its backends terminated.
func TestServerStopStartTerminate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := NewServer(t)
	db := openDB(t, srv.NewDSN(t))
	if _, err := db.ExecContext(ctx, `CREATE TABLE kept (a int); INSERT INTO kept VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.PingContext(ctx); err == nil {
		t.Fatal("a ping succeeded while the server was stopped")
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var a int
	if err := db.QueryRowContext(ctx, `SELECT a FROM kept`).Scan(&a); err != nil || a != 42 {
		t.Fatalf("after the restart: %d, %v; want the row written before the stop", a, err)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	db.SetMaxIdleConns(0) // no connection from before the restart
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := srv.TerminateBackends(ctx, currentDatabase(t, db))
	if err != nil || n < 1 {
		t.Fatalf("terminate backends: %d, %v; want at least the held connection", n, err)
	}
	if err := conn.PingContext(ctx); err == nil {
		t.Fatal("a terminated connection still answers")
	}
}

// TestStartDurableRunsWithPostgresDefaults: a server StartDurable starts
// syncs its commits to disk (fsync, synchronous_commit and full_page_writes
// on), where Start's runs with all three off.
func TestStartDurableRunsWithPostgresDefaults(t *testing.T) {
	t.Parallel()
	if os.Getenv("DATABASE_URL") != "" {
		t.Skip("DATABASE_URL's server is used as it is")
	}
	ctx := context.Background()
	for _, c := range []struct {
		start func(context.Context) (*Server, error)
		want  string
	}{{Start, "off off off"}, {StartDurable, "on on on"}} {
		s, err := c.start(ctx)
		if err != nil {
			if os.Getenv(RequireEnv) != "" {
				t.Fatal(err)
			}
			t.Skip(err)
		}
		var fsync, syncCommit, fullPages string
		err = s.admin.QueryRowContext(ctx, `SELECT current_setting('fsync'), current_setting('synchronous_commit'), current_setting('full_page_writes')`).
			Scan(&fsync, &syncCommit, &fullPages)
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := fsync + " " + syncCommit + " " + fullPages; got != c.want {
			t.Errorf("fsync, synchronous_commit, full_page_writes: %s, want %s", got, c.want)
		}
	}
}
