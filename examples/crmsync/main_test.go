package main

import (
	"context"
	"testing"
	"time"

	"github.com/esync/queue/queuetest"
)

// TestCRMSyncExample runs the main job end to end at a small size: run fails
// unless the CRM matches the table after the initial sync and after the
// changes, and no task FAILED.
func TestCRMSyncExample(t *testing.T) {
	t.Setenv("DATABASE_URL", queuetest.NewDSN(t))
	cfg := config{customers: 60, burst: 20, timeout: 90 * time.Second, faults: 0.1, quiet: true}
	if err := run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
}
