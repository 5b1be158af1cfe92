package main

import (
	"context"
	"testing"
	"time"

	"github.com/esync/queue/queuetest"
)

// TestReconcile runs the example for a few seconds: run fails unless the
// reconciliation ran and the totals match the orders.
func TestReconcile(t *testing.T) {
	t.Setenv("DATABASE_URL", queuetest.NewDSN(t))
	if err := run(context.Background(), 3*time.Second, "* * * * * *"); err != nil {
		t.Fatal(err)
	}
}
