package main

import (
	"context"
	"testing"
	"time"

	"github.com/esync/queue/examples/internal/userdb"
)

// TestReconcile runs the example for a few seconds: run fails unless the
// reconciliation ran and the totals match the orders. It runs against a
// user's database with customer and orders tables of their own, as a role
// that may not create databases, and leaves everything of theirs untouched.
func TestReconcile(t *testing.T) {
	user := userdb.New(t, true)
	t.Setenv("DATABASE_URL", user.DSN)
	defer user.RequireUntouched(t)
	if err := run(context.Background(), 3*time.Second, "* * * * * *", false); err != nil {
		t.Fatal(err)
	}
}
