package queuetest

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"

	"github.com/esync/queue"
)

// NewDSN creates a fresh database for the test and returns its connection
// string. The database is dropped when the test ends. Without any
// PostgreSQL the test is skipped (or fails when ESYNC_REQUIRE_PG=1).
func NewDSN(t testing.TB) string {
	t.Helper()
	s, err := sharedServer()
	if err != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("queuetest: %v (%s is set)", err, RequireEnv)
		}
		t.Skipf("queuetest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name, dsn, err := s.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.DropDatabase(ctx, name); err != nil {
			t.Errorf("queuetest: drop database %s: %v", name, err)
		}
	})
	return dsn
}

// NewDB opens a fresh database for the test; it is closed and dropped when
// the test ends.
func NewDB(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", NewDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// NewDriver returns a migrated PostgresDriver on a fresh database.
func NewDriver(t testing.TB, opts ...queue.PostgresOption) *queue.PostgresDriver {
	t.Helper()
	d, err := queue.OpenPostgres(NewDSN(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	// Registered after NewDSN's cleanup, so it runs first: close before drop.
	t.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return d
}
