// Command bench measures esync against River on one PostgreSQL server, in
// one run: bulk insert rate; no-op drain throughput with per-key dedup on,
// through raw Claim/Finish workers and through a SyncManager; the same drain
// right after the queue went idle and was vacuumed; a dedup burst of many
// tasks on few keys (River, which has no replace-dedup, drains as many
// distinct jobs); the drain of -shape-due due tasks behind backlogs of odd
// shapes, each compared with the same drain on an otherwise empty queue:
// -shape-later tasks due in an hour, one busy key with -shape-hot tasks
// queued behind its running task, -shape-busy-keys busy keys with
// -shape-busy-each queued each (esync only: River has no per-key
// serialisation), -shape-done finished rows not yet deleted; insert→start
// latency of single tasks on idle workers; a mixed workload (-producers
// goroutines adding single tasks at -mixed-rate for -mixed-for while the
// queue drains); and (esync only) CDC and retention: the rate at which
// finished tasks are deleted, and that the table of finished tasks stays
// bounded while a steady drain runs.
//
// It starts a throwaway PostgreSQL through queuetest (or uses DATABASE_URL
// as it is), makes one database for esync and one for River on that
// server, and runs the two side by side in interleaved rounds so both see
// the same noise. The server it starts is durable, as in production (fsync,
// synchronous_commit and full_page_writes on); -fast turns all three off.
// The header says what the server runs with. Each round's figures are
// printed as they come, then a table of medians.
//
//	cd bench && go run . -rounds 5
//
// -only xmin runs, instead, producers at -xmin-rate against a SyncManager,
// then against a River client, through phases: a baseline (-xmin-baseline),
// a transaction holding the xmin horizon back (-xmin-hold), a recovery
// (-xmin-recovery), 1.5× the rate (-xmin-surge) and a recovery again, with
// the throughput, insert→start latency, backlog, dead tuples and table size
// of each phase:
//
//	cd bench && go run . -only xmin -xmin-hold 1m
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"
)

// config holds the benchmark's sizes and knobs; the flags fill it.
type config struct {
	Rounds     int // interleaved rounds per metric
	InsertN    int // tasks per bulk insert call
	DrainN     int // tasks preloaded for the drain
	DedupN     int // tasks preloaded for the dedup burst
	DedupKeys  int // distinct keys in the dedup burst
	Workers    int // esync drain goroutines
	ClaimLimit int // esync tasks per Claim, and the SyncManager's batch size

	ManagerConcurrency int           // tasks the SyncManager drain runs at once
	LatencyN           int           // single tasks timed per latency round
	CDCRows            int           // rows of the CDC source table
	RetentionN         int           // finished tasks past retention for the deletion rate
	RetentionDrainRate int           // tasks/s added during the retention drain
	RetentionDrainFor  time.Duration // how long the retention drain runs
	CDCPartitions      []int         // CDC partition counts measured side by side
	CDCBulkMax         int           // most tasks the bulk insert the first sync is compared with inserts
	Timeout            time.Duration // longest any one measurement may take
	CPUProfile         string        // write a Go CPU profile of the whole run here
	Only               string        // "" for everything, or one measurement alone (see the -only flag)
	DashboardTasks     int           // tasks in the queue behind the dashboard's pages
	DashboardRequests  int           // timed requests per dashboard page
	Pooler             bool          // esync direct vs through PgBouncer instead of esync vs River
	Fast               bool          // the harness's server runs with fsync, synchronous_commit and full_page_writes off

	ShapeDue      int // due tasks drained behind each backlog shape
	ShapeLater    int // tasks due in an hour
	ShapeHot      int // tasks queued behind one busy key
	ShapeBusyKeys int // busy keys
	ShapeBusyEach int // tasks queued behind each of ShapeBusyKeys
	ShapeDone     int // finished tasks not yet deleted

	Producers int           // goroutines adding single tasks under a steady load
	MixedRate int           // tasks added per second in the mixed workload
	MixedFor  time.Duration // how long the mixed workload runs

	XminRate     int           // tasks added per second in the xmin run (1.5× in its surge)
	XminBaseline time.Duration // the xmin run's phases
	XminHold     time.Duration
	XminRecovery time.Duration
	XminSurge    time.Duration
	XminSide     string // "both", "esync" or "river"
}

// defaultConfig is what `go run .` measures.
func defaultConfig() config {
	return config{
		Rounds:     3,
		InsertN:    10_000,
		DrainN:     20_000,
		DedupN:     20_000,
		DedupKeys:  50,
		Workers:    2,
		ClaimLimit: 500,

		// Twice a claim: the next claim goes out while a batch finishes.
		ManagerConcurrency: 1000,
		LatencyN:           200,
		CDCRows:            200_000,
		RetentionN:         200_000,
		RetentionDrainRate: 6_000,
		RetentionDrainFor:  30 * time.Second,
		CDCPartitions:      []int{1, 2},
		CDCBulkMax:         1_000_000,
		Timeout:            5 * time.Minute,
		DashboardTasks:     1_000_000,
		DashboardRequests:  20,

		ShapeDue:      5000,
		ShapeLater:    300_000,
		ShapeHot:      100_000,
		ShapeBusyKeys: 1000,
		ShapeBusyEach: 100,
		ShapeDone:     1_000_000,

		Producers: 16,
		MixedRate: 2000,
		MixedFor:  20 * time.Second,

		XminRate:     2000,
		XminBaseline: 30 * time.Second,
		XminHold:     5 * time.Minute,
		XminRecovery: time.Minute,
		XminSurge:    time.Minute,
		XminSide:     "both",
	}
}

// onlyParts are the parts -only can name.
var onlyParts = []string{"drains", "designs", "shapes", "cdc", "retention", "mixed", "latency", "dashboard", "xmin"}

func main() {
	cfg := defaultConfig()
	flag.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "interleaved rounds (esync, River, esync, …) per metric")
	flag.IntVar(&cfg.InsertN, "insert-n", cfg.InsertN, "tasks per bulk insert call")
	flag.IntVar(&cfg.DrainN, "drain-n", cfg.DrainN, "tasks preloaded before each drain")
	flag.IntVar(&cfg.DedupN, "dedup-n", cfg.DedupN, "tasks preloaded before each dedup burst")
	flag.IntVar(&cfg.DedupKeys, "dedup-keys", cfg.DedupKeys, "distinct keys in the dedup burst")
	flag.IntVar(&cfg.Workers, "workers", cfg.Workers, "esync drain workers (goroutines, one connection each)")
	flag.IntVar(&cfg.ClaimLimit, "claim-limit", cfg.ClaimLimit, "esync tasks claimed per round trip (workers and SyncManager batch size)")
	flag.IntVar(&cfg.ManagerConcurrency, "manager-concurrency", cfg.ManagerConcurrency, "tasks the SyncManager drain runs at once")
	flag.IntVar(&cfg.LatencyN, "latency-n", cfg.LatencyN, "single tasks timed per latency round")
	flag.IntVar(&cfg.CDCRows, "cdc-rows", cfg.CDCRows, "rows of the CDC source table (a multiple of 100)")
	flag.IntVar(&cfg.RetentionN, "retention-n", cfg.RetentionN, "finished tasks past retention that the retention measurement deletes")
	flag.IntVar(&cfg.RetentionDrainRate, "retention-drain-rate", cfg.RetentionDrainRate, "tasks/s added during the retention drain")
	flag.DurationVar(&cfg.RetentionDrainFor, "retention-drain-for", cfg.RetentionDrainFor, "how long the retention drain runs")
	flag.Func("cdc-partitions", `CDC partition counts to measure side by side, comma separated (default "1,2")`, func(v string) error {
		var ns []int
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return fmt.Errorf("%q is not a number", f)
			}
			ns = append(ns, n)
		}
		cfg.CDCPartitions = ns
		return nil
	})
	flag.IntVar(&cfg.CDCBulkMax, "cdc-bulk-max", cfg.CDCBulkMax, "most tasks in the bulk insert the CDC first sync is compared with (it inserts min(-cdc-rows, this))")
	flag.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "longest any one measurement may take")
	flag.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a Go CPU profile of the run to this file")
	flag.StringVar(&cfg.Only, "only", "", `measure one part alone: "drains" (the two no-op drains), "designs" (esync's claim against claims of other designs on its table), "shapes", "cdc", "retention", "mixed", "latency", "dashboard" or "xmin" (the last two are not part of the full run)`)
	flag.IntVar(&cfg.DashboardTasks, "dashboard-tasks", cfg.DashboardTasks, "tasks in the queue behind the dashboard's pages (-only dashboard)")
	flag.IntVar(&cfg.DashboardRequests, "dashboard-requests", cfg.DashboardRequests, "timed requests per dashboard page (-only dashboard)")
	flag.BoolVar(&cfg.Fast, "fast", false, "start the server with fsync, synchronous_commit and full_page_writes off instead of durable (no effect with DATABASE_URL, whose server is used as it is, or with -pooler)")
	flag.IntVar(&cfg.ShapeDue, "shape-due", cfg.ShapeDue, "due tasks (distinct keys) a SyncManager drains behind each backlog shape, and alone for the baseline")
	flag.IntVar(&cfg.ShapeLater, "shape-later", cfg.ShapeLater, "backlog shape: tasks due in an hour, on other keys")
	flag.IntVar(&cfg.ShapeHot, "shape-hot", cfg.ShapeHot, "backlog shape: tasks queued behind the running task of one key (esync only)")
	flag.IntVar(&cfg.ShapeBusyKeys, "shape-busy-keys", cfg.ShapeBusyKeys, "backlog shape: keys with a running task each (esync only)")
	flag.IntVar(&cfg.ShapeBusyEach, "shape-busy-each", cfg.ShapeBusyEach, "backlog shape: tasks queued behind each of -shape-busy-keys")
	flag.IntVar(&cfg.ShapeDone, "shape-done", cfg.ShapeDone, "backlog shape: finished tasks not yet deleted")
	flag.IntVar(&cfg.Producers, "producers", cfg.Producers, "goroutines adding single tasks in the mixed workload and the xmin run")
	flag.IntVar(&cfg.MixedRate, "mixed-rate", cfg.MixedRate, "tasks added per second in the mixed workload")
	flag.DurationVar(&cfg.MixedFor, "mixed-for", cfg.MixedFor, "how long the mixed workload runs")
	flag.IntVar(&cfg.XminRate, "xmin-rate", cfg.XminRate, "tasks added per second in the xmin run (-only xmin); 1.5× that in its surge")
	flag.DurationVar(&cfg.XminBaseline, "xmin-baseline", cfg.XminBaseline, "xmin run: length of the baseline phase")
	flag.DurationVar(&cfg.XminHold, "xmin-hold", cfg.XminHold, "xmin run: how long a transaction holds the xmin horizon back")
	flag.DurationVar(&cfg.XminRecovery, "xmin-recovery", cfg.XminRecovery, "xmin run: length of each recovery phase")
	flag.DurationVar(&cfg.XminSurge, "xmin-surge", cfg.XminSurge, "xmin run: length of the phase at 1.5× the rate")
	flag.StringVar(&cfg.XminSide, "xmin-side", cfg.XminSide, `xmin run: "both", "esync" or "river"`)
	flag.BoolVar(&cfg.Pooler, "pooler", false, "measure esync straight on PostgreSQL next to through a PgBouncer in transaction mode (WithPooler, with and without a direct LISTEN DSN) instead of esync vs River")
	flag.Parse()
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := profiled(cfg.CPUProfile, func() error { return run(ctx, cfg, os.Stdout) })
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// profiled runs f, under the Go CPU profiler when path is not empty.
func profiled(path string, f func() error) error {
	if path == "" {
		return f()
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return err
	}
	err = f()
	pprof.StopCPUProfile()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func (c config) validate() error {
	switch {
	case c.Rounds < 1:
		return fmt.Errorf("-rounds must be at least 1")
	case c.InsertN < 1 || c.DrainN < 1 || c.DedupN < 1:
		return fmt.Errorf("-insert-n, -drain-n and -dedup-n must be at least 1")
	case c.DedupKeys < 1:
		return fmt.Errorf("-dedup-keys must be at least 1")
	case c.Workers < 1 || c.ClaimLimit < 1 || c.ManagerConcurrency < 1:
		return fmt.Errorf("-workers, -claim-limit and -manager-concurrency must be at least 1")
	case c.LatencyN < 1 || c.CDCRows < 100:
		return fmt.Errorf("-latency-n must be at least 1 and -cdc-rows at least 100")
	case len(c.CDCPartitions) == 0 || c.CDCBulkMax < 1:
		return fmt.Errorf("-cdc-partitions needs at least one count and -cdc-bulk-max must be at least 1")
	case c.Timeout <= 0:
		return fmt.Errorf("-timeout must be positive")
	case c.RetentionN < 1 || c.RetentionDrainRate < 1 || c.RetentionDrainFor <= 0:
		return fmt.Errorf("-retention-n and -retention-drain-rate must be at least 1, -retention-drain-for positive")
	case c.Only != "" && !slices.Contains(onlyParts, c.Only):
		return fmt.Errorf("-only takes %s (or nothing)", strings.Join(onlyParts, ", "))
	case c.ShapeDue < 1 || c.ShapeLater < 1 || c.ShapeHot < 1 || c.ShapeBusyKeys < 1 || c.ShapeBusyEach < 1 || c.ShapeDone < 1:
		return fmt.Errorf("-shape-due, -shape-later, -shape-hot, -shape-busy-keys, -shape-busy-each and -shape-done must be at least 1")
	case c.Producers < 1 || c.MixedRate < 1 || c.MixedFor <= 0:
		return fmt.Errorf("-producers and -mixed-rate must be at least 1, -mixed-for positive")
	case c.XminRate < 1 || c.XminBaseline <= 0 || c.XminHold <= 0 || c.XminRecovery <= 0 || c.XminSurge <= 0:
		return fmt.Errorf("-xmin-rate must be at least 1 and the -xmin-… phase lengths positive")
	case c.XminSide != "both" && c.XminSide != "esync" && c.XminSide != "river":
		return fmt.Errorf(`-xmin-side takes "both", "esync" or "river"`)
	case c.DashboardTasks < 1000 || c.DashboardRequests < 1:
		return fmt.Errorf("-dashboard-tasks must be at least 1000 and -dashboard-requests at least 1")
	}
	return nil
}
