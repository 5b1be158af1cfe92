package main

import (
	"context"
	"testing"

	"github.com/esync/queue/examples/internal/userdb"
)

// TestQuickstart runs the example end to end against a user's database,
// once with a role that may create databases and once with one that may
// not: run checks its own outcome (10 customers synced at their newest
// version, 20 tasks superseded), and the user's queue, with pending tasks
// of the example's name and keys, and their tables are untouched.
func TestQuickstart(t *testing.T) {
	for _, restricted := range []bool{false, true} {
		user := userdb.New(t, restricted)
		t.Setenv("DATABASE_URL", user.DSN)
		for range 2 { // a re-run starts clean
			if err := run(context.Background(), false); err != nil {
				t.Fatalf("restricted role %v: %v", restricted, err)
			}
		}
		user.RequireUntouched(t)
	}
}
