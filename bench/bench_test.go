package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue/queuetest"
)

// TestBenchSmoke runs the whole benchmark at tiny sizes so the program
// cannot rot: every side must insert, drain and check its tasks, and the
// table must list every metric. It asserts on behaviour, never on speed.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	srv, err := queuetest.Start(ctx)
	if err != nil {
		if os.Getenv(queuetest.RequireEnv) != "" {
			t.Fatalf("%v (%s is set)", err, queuetest.RequireEnv)
		}
		t.Skip(err)
	}
	defer srv.Close()

	cfg := defaultConfig()
	cfg.Rounds = 1
	cfg.InsertN, cfg.DrainN, cfg.DedupN = 200, 200, 200
	cfg.DedupKeys = 10
	cfg.LatencyN, cfg.CDCRows = 5, 1000
	cfg.RetentionN, cfg.RetentionDrainRate, cfg.RetentionDrainFor = 1000, 200, 2*time.Second
	cfg.ShapeDue, cfg.ShapeLater, cfg.ShapeHot, cfg.ShapeBusyKeys, cfg.ShapeBusyEach, cfg.ShapeDone = 50, 300, 100, 5, 10, 1000
	cfg.Producers, cfg.MixedRate, cfg.MixedFor = 4, 100, time.Second
	cfg.Timeout = 2 * time.Minute
	var out bytes.Buffer
	if err := runOn(ctx, srv, cfg, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())

	for _, want := range []string{
		"postgres:   PostgreSQL",
		"durability: fsync=",
		"| bulk insert, 200 in one call (tasks/s) | TaskManager.AddMany | Client.InsertMany |",
		"| bulk insert, 200 in one call (tasks/s) | TaskManager.AddMany | Client.InsertManyFast (COPY) |",
		"| no-op drain of 200, distinct keys (tasks/s) |",
		"| no-op drain of 200, distinct keys, SyncManager (tasks/s) |",
		"| no-op drain of 200 after idle (tasks/s) |",
		"| dedup burst, 200 on 10 keys, adding timed (tasks retired/s) |",
		"(10 runs",
		"| dedup burst, 200 on 10 keys, adding timed (tasks retired/s) | same workers; newest per key runs | no replace-dedup: 200 distinct jobs",
		"| drain of 50 due alone (tasks/s) |",
		"| drain of 50 due behind 300 due in 1h (tasks/s) |",
		"| drain of 50 due beside 1 busy key with 100 queued (tasks/s) |",
		"| drain of 50 due beside 5 busy keys with 10 queued each (tasks/s) |",
		"| drain of 50 due beside 1000 finished (tasks/s) |",
		"× baseline",
		"(to the baseline: ",
		"| tasks run/s (median) |",
		"| insert→start p99 (all rounds) |",
		"| the add call alone, commit included, p99 |",
		"| from the add's return to the start, p50 |",
		"| the insert call alone (Add, Insert), p50 |",
		"| backlog at the end (median) |",
		"| p50 |",
		"| p99 |",
		"| first sync: tasks emitted/s |",
		"| 1000 finished tasks past retention: deleted/s |",
		"| finished rows in the table during the drain",
		"| first sync / that bulk insert |",
		"| diff, 1% changed: source rows/s (median of 3 diffs a round) |",
		"1 partitions | 2 partitions |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestBenchDesignsSmoke runs -only designs at tiny sizes: every claim
// design drains its tasks, the producers of both add designs add theirs,
// and the plain insert inserts.
func TestBenchDesignsSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := defaultConfig()
	cfg.Only, cfg.Rounds = "designs", 1
	cfg.InsertN, cfg.DrainN, cfg.Producers = 100, 300, 4
	cfg.Timeout = 2 * time.Minute
	out := runSmoke(ctx, t, cfg)
	for _, want := range []string{
		"| no-op drain of 300, esync's claim (tasks/s) |",
		"| no-op drain of 300, one statement, one pending task per key (tasks/s) |",
		"| no-op drain of 300, no per-key guarantees (tasks/s) |",
		"| 4 producers adding 250 single tasks each to one key, esync's add (tasks added/s) |",
		"| 4 producers adding 250 single tasks each to one key, adds that wait for each other (one pending task per key) (tasks added/s) |",
		"| bulk insert, 100 in one call, superseding nothing (tasks/s) |",
		"stays open 1s: ",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// runSmoke runs the bench with cfg on a server of its own and returns its
// output; it skips the test when no PostgreSQL can be started (and none is
// required).
func runSmoke(ctx context.Context, t *testing.T, cfg config) *bytes.Buffer {
	t.Helper()
	var out bytes.Buffer
	if err := run(ctx, cfg, &out); err != nil {
		if os.Getenv(queuetest.RequireEnv) == "" && strings.Contains(err.Error(), "no PostgreSQL available") {
			t.Skip(err)
		}
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	return &out
}

// TestBenchXminSmoke runs the pinned-xmin phases of both sides at a low
// rate and for a second each: every phase must report its row.
func TestBenchXminSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := defaultConfig()
	cfg.Only, cfg.Producers, cfg.XminRate = "xmin", 4, 100
	cfg.XminBaseline, cfg.XminHold, cfg.XminRecovery, cfg.XminSurge = time.Second, time.Second, time.Second, time.Second
	out := runSmoke(ctx, t, cfg)
	wants := []string{"pinned xmin, esync", "pinned xmin, River", "| xmin pinned | 1s | 100 |", "| 1.5× load | 1s | 150 |"}
	if os.Getenv("DATABASE_URL") == "" {
		wants = append(wants, "durability: fsync=on synchronous_commit=on full_page_writes=on")
	}
	for _, want := range wants {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if n := strings.Count(out.String(), "| recovery | 1s |"); n != 4 {
		t.Errorf("%d recovery rows, want 2 per side", n)
	}
}

// TestBenchPoolerSmoke runs the -pooler comparison at tiny sizes: every
// path inserts, drains and times its tasks.
func TestBenchPoolerSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and PgBouncer")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := defaultConfig()
	cfg.Pooler, cfg.Rounds = true, 1
	cfg.InsertN, cfg.DrainN, cfg.LatencyN = 100, 100, 3
	cfg.Timeout = 2 * time.Minute
	var out bytes.Buffer
	err := run(ctx, cfg, &out)
	if err != nil && os.Getenv(queuetest.RequireEnv) == "" && strings.Contains(err.Error(), "not found") {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	for _, want := range []string{"| direct |", "| pgbouncer |", "| pgbouncer+listen |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
