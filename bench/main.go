// Command bench measures esync against River on one PostgreSQL server, in
// one run: bulk insert rate; no-op drain throughput with per-key dedup on,
// through raw Claim/Finish workers and through a SyncManager; the same drain
// right after the queue went idle and was vacuumed; and (esync only) a dedup
// burst of many tasks on few keys; and (esync only) CDC and retention: the
// rate at which finished tasks are deleted, and that the table of finished
// tasks stays bounded while a steady drain runs.
//
// It starts a throwaway PostgreSQL through queuetest (or uses DATABASE_URL),
// makes one database for esync and one for River on that server, and runs
// the two side by side in interleaved rounds so both see the same noise.
// Each round's figures are printed as they come, then a table of medians.
//
//	cd bench && go run . -rounds 5
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
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
	Only               string        // "" for everything, "cdc", "retention" or "dashboard" for that measurement alone
	DashboardTasks     int           // tasks in the queue behind the dashboard's pages
	DashboardRequests  int           // timed requests per dashboard page
	Pooler             bool          // esync direct vs through PgBouncer instead of esync vs River
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
	}
}

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
	flag.StringVar(&cfg.Only, "only", "", `measure one part alone: "cdc", "retention", or "dashboard" (not part of the full run)`)
	flag.IntVar(&cfg.DashboardTasks, "dashboard-tasks", cfg.DashboardTasks, "tasks in the queue behind the dashboard's pages (-only dashboard)")
	flag.IntVar(&cfg.DashboardRequests, "dashboard-requests", cfg.DashboardRequests, "timed requests per dashboard page (-only dashboard)")
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
	case c.Only != "" && c.Only != "cdc" && c.Only != "retention" && c.Only != "dashboard":
		return fmt.Errorf(`-only takes "cdc", "retention" or "dashboard" (or nothing)`)
	case c.DashboardTasks < 1000 || c.DashboardRequests < 1:
		return fmt.Errorf("-dashboard-tasks must be at least 1000 and -dashboard-requests at least 1")
	}
	return nil
}
