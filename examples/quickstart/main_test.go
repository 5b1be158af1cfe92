package main

import (
	"context"
	"testing"

	"github.com/esync/queue/queuetest"
)

// TestQuickstart runs the example end to end; run checks its own outcome
// (10 customers synced at their newest version, 20 tasks superseded).
func TestQuickstart(t *testing.T) {
	t.Setenv("DATABASE_URL", queuetest.NewDSN(t))
	if err := run(context.Background()); err != nil {
		t.Fatal(err)
	}
}
