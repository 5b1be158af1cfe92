package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// poolerPath is one way esync reaches the server in the -pooler comparison.
type poolerPath struct {
	name string
	dsn  func(srv *queuetest.Server, db string) string
	opts func(srv *queuetest.Server, db string) []queue.PostgresOption
}

// poolerPaths: straight to PostgreSQL; through PgBouncer in transaction
// mode with WithPooler (idle streams poll); and the same with LISTEN over a
// direct connection string.
var poolerPaths = []poolerPath{{
	name: "direct",
	dsn:  func(srv *queuetest.Server, db string) string { return srv.DirectDSN(db) },
	opts: func(*queuetest.Server, string) []queue.PostgresOption { return nil },
}, {
	name: "pgbouncer",
	dsn:  func(srv *queuetest.Server, db string) string { return srv.DSN(db) },
	opts: func(*queuetest.Server, string) []queue.PostgresOption {
		return []queue.PostgresOption{queue.WithPooler()}
	},
}, {
	name: "pgbouncer+listen",
	dsn:  func(srv *queuetest.Server, db string) string { return srv.DSN(db) },
	opts: func(srv *queuetest.Server, db string) []queue.PostgresOption {
		return []queue.PostgresOption{queue.WithPooler(), queue.WithListenDSN(srv.DirectDSN(db))}
	},
}}

// poolerFigures are one path's figures over all rounds.
type poolerFigures struct {
	insert, drain, manager []float64
	latency                latencies
}

// runPooler starts a cluster with a PgBouncer in transaction mode in front
// and measures, per path and in interleaved rounds on fresh databases, the
// bulk insert, the workers' drain, the SyncManager's drain and the
// insert→start latency of single tasks.
func runPooler(ctx context.Context, cfg config, w io.Writer) error {
	srv, err := queuetest.StartPooled(ctx)
	if err != nil {
		return err
	}
	defer srv.Close()
	env, err := describeEnvironment(ctx, srv.DirectDSN("postgres"), "local, PgBouncer in transaction mode in front")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "esync straight on PostgreSQL vs through PgBouncer, %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	printEnvironment(w, env)
	fmt.Fprintf(w, "settings:   rounds=%d insert-n=%d drain-n=%d workers=%d claim-limit=%d manager-concurrency=%d latency-n=%d\n\n",
		cfg.Rounds, cfg.InsertN, cfg.DrainN, cfg.Workers, cfg.ClaimLimit, cfg.ManagerConcurrency, cfg.LatencyN)
	figs := make([]poolerFigures, len(poolerPaths))
	for round := 1; round <= cfg.Rounds; round++ {
		for i := range poolerPaths {
			// Alternate the order so no path always goes first.
			pi := i
			if round%2 == 0 {
				pi = len(poolerPaths) - 1 - i
			}
			p, f := poolerPaths[pi], &figs[pi]
			var ms [3]measurement
			for k, measure := range []func(*esyncBench, context.Context) (measurement, error){
				(*esyncBench).Insert, (*esyncBench).Drain, (*esyncBench).ManagerDrain,
			} {
				m, err := onPath(ctx, srv, cfg, p, measure)
				if err != nil {
					return fmt.Errorf("%s: %w", p.name, err)
				}
				ms[k] = m
			}
			f.insert, f.drain, f.manager = append(f.insert, ms[0].Rate), append(f.drain, ms[1].Rate), append(f.manager, ms[2].Rate)
			name, _, err := srv.CreateDatabase(ctx)
			if err != nil {
				return err
			}
			l, _, err := esyncLatency(ctx, p.dsn(srv, name), cfg, p.opts(srv, name)...)
			srv.DropDatabase(context.WithoutCancel(ctx), name)
			if err != nil {
				return fmt.Errorf("%s: latency: %w", p.name, err)
			}
			f.latency = append(f.latency, l...)
			fmt.Fprintf(w, "round %d  %-16s insert %9s/s  drain %9s/s  SyncManager drain %9s/s  insert→start p50 %s p99 %s\n",
				round, p.name, formatRate(ms[0].Rate), formatRate(ms[1].Rate), formatRate(ms[2].Rate),
				l.quantile(0.5).Round(10*time.Microsecond), l.quantile(0.99).Round(10*time.Microsecond))
		}
	}
	fmt.Fprintf(w, "\n| medians (%d rounds) | bulk insert of %d (tasks/s) | drain of %d, %d workers (tasks/s) | SyncManager drain (tasks/s) | insert→start p50 | p99 |\n|---|---:|---:|---:|---:|---:|\n",
		cfg.Rounds, cfg.InsertN, cfg.DrainN, cfg.Workers)
	for i, p := range poolerPaths {
		f := figs[i]
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", p.name, formatRate(median(f.insert)), formatRate(median(f.drain)),
			formatRate(median(f.manager)), f.latency.quantile(0.5).Round(10*time.Microsecond), f.latency.quantile(0.99).Round(10*time.Microsecond))
	}
	fmt.Fprintln(w)
	return nil
}

// onPath takes one measurement on a fresh database reached by path p.
func onPath(ctx context.Context, srv *queuetest.Server, cfg config, p poolerPath, measure func(*esyncBench, context.Context) (measurement, error)) (measurement, error) {
	name, _, err := srv.CreateDatabase(ctx)
	if err != nil {
		return measurement{}, err
	}
	defer srv.DropDatabase(context.WithoutCancel(ctx), name)
	b, err := newEsyncBench(ctx, p.dsn(srv, name), cfg, p.opts(srv, name)...)
	if err != nil {
		return measurement{}, err
	}
	defer b.Close()
	return measure(b, ctx)
}
