package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/esync/queue/queuetest"
)

// measurement is one figure from one run of one side.
type measurement struct {
	Rate float64 // tasks per second
	Note string  // extra detail for the round's line, if any
}

// measureFunc takes one measurement.
type measureFunc func(context.Context) (measurement, error)

// metric is one row of the table: what each side does, how to measure it,
// and the figure of every round.
type metric struct {
	Name      string
	EsyncDoes string
	RiverDoes string // empty when River has no counterpart
	esync     measureFunc
	river     measureFunc // nil when River has no counterpart
	// Baseline, when set, is the row measured earlier in each round that
	// this row's figures are compared with, side by side.
	Baseline   *metric
	EsyncRates []float64
	RiverRates []float64
}

// metrics lists the table's rows in the order they are measured.
func metrics(cfg config, fresh freshDatabases) []*metric {
	e, r := fresh.esync, fresh.river
	return append([]*metric{{
		Name:      fmt.Sprintf("bulk insert, %d in one call (tasks/s)", cfg.InsertN),
		EsyncDoes: "TaskManager.AddMany",
		RiverDoes: "Client.InsertMany",
		esync:     e((*esyncBench).Insert),
		river:     r((*riverBench).InsertMany),
	}, {
		Name:      fmt.Sprintf("bulk insert, %d in one call (tasks/s)", cfg.InsertN),
		EsyncDoes: "TaskManager.AddMany",
		RiverDoes: "Client.InsertManyFast (COPY)",
		esync:     e((*esyncBench).Insert),
		river:     r((*riverBench).InsertManyFast),
	}, {
		Name:      fmt.Sprintf("no-op drain of %d, distinct keys (tasks/s)", cfg.DrainN),
		EsyncDoes: fmt.Sprintf("%d workers × Claim(%d) → Finish", cfg.Workers, cfg.ClaimLimit),
		RiverDoes: "client as in `river bench`",
		esync:     e((*esyncBench).Drain),
		river:     r((*riverBench).Drain),
	}, {
		Name:      fmt.Sprintf("no-op drain of %d, distinct keys, SyncManager (tasks/s)", cfg.DrainN),
		EsyncDoes: fmt.Sprintf("SyncManager from Start to the last result written, %d at once, batches of %d", cfg.ManagerConcurrency, cfg.ClaimLimit),
		RiverDoes: "client as in `river bench`",
		esync:     e((*esyncBench).ManagerDrain),
		river:     r((*riverBench).Drain),
	}, {
		Name:      fmt.Sprintf("no-op drain of %d after idle (tasks/s)", cfg.DrainN),
		EsyncDoes: "workers as above, after VACUUM ANALYZE of the drained queue",
		RiverDoes: "client as above, after VACUUM ANALYZE of the drained table",
		esync:     e((*esyncBench).DrainAfterIdle),
		river:     r((*riverBench).DrainAfterIdle),
	}, {
		Name:      fmt.Sprintf("dedup burst, %d on %d keys, adding timed (tasks retired/s)", cfg.DedupN, cfg.DedupKeys),
		EsyncDoes: "same workers; newest per key runs",
		RiverDoes: fmt.Sprintf("no replace-dedup: %d distinct jobs, client as above", cfg.DedupN),
		esync:     e((*esyncBench).DedupBurst),
		river:     r((*riverBench).DedupBurst),
	}}, shapeMetrics(cfg, fresh)...)
}

// freshDatabases gives every measurement a database of its own, created and
// migrated just before it and dropped after it, so that no measurement
// inherits another's table bloat, planner statistics or cached plans.
type freshDatabases struct {
	srv *queuetest.Server
	cfg config
}

// esync turns a measurement of an esync queue into one on a fresh database.
func (f freshDatabases) esync(measure func(*esyncBench, context.Context) (measurement, error)) measureFunc {
	return func(ctx context.Context) (measurement, error) {
		return onFreshDatabase(ctx, f.srv, func(dsn string) (measurement, error) {
			b, err := newEsyncBench(ctx, dsn, f.cfg)
			if err != nil {
				return measurement{}, err
			}
			defer b.Close()
			return measure(b, ctx)
		})
	}
}

// river turns a measurement of River into one on a fresh database.
func (f freshDatabases) river(measure func(*riverBench, context.Context) (measurement, error)) measureFunc {
	return func(ctx context.Context) (measurement, error) {
		return onFreshDatabase(ctx, f.srv, func(dsn string) (measurement, error) {
			b, err := newRiverBench(ctx, dsn, f.cfg, 0)
			if err != nil {
				return measurement{}, err
			}
			defer b.Close()
			return measure(b, ctx)
		})
	}
}

// onFreshDatabase runs f on a new database of srv and drops it afterwards.
func onFreshDatabase(ctx context.Context, srv *queuetest.Server, f func(dsn string) (measurement, error)) (measurement, error) {
	name, dsn, err := srv.CreateDatabase(ctx)
	if err != nil {
		return measurement{}, err
	}
	m, err := f(dsn)
	if dropErr := srv.DropDatabase(context.WithoutCancel(ctx), name); err == nil {
		err = dropErr
	}
	return m, err
}

// run starts one PostgreSQL (or uses DATABASE_URL) and runs the benchmark
// on it. The server the harness starts is durable (fsync,
// synchronous_commit and full_page_writes on) unless -fast says otherwise.
func run(ctx context.Context, cfg config, w io.Writer) error {
	if cfg.Pooler {
		return runPooler(ctx, cfg, w)
	}
	start := queuetest.StartDurable
	if cfg.Fast {
		start = queuetest.Start
	}
	srv, err := start(ctx)
	if err != nil {
		return err
	}
	defer srv.Close()
	return runOn(ctx, srv, cfg, w)
}

// runOn measures every metric on srv in interleaved rounds, printing each
// round's figures to w, and ends with the table of medians.
func runOn(ctx context.Context, srv *queuetest.Server, cfg config, w io.Writer) error {
	env, err := describeEnvironment(ctx, srv.DSN("postgres"), srv.Source)
	if err != nil {
		return err
	}
	printHeader(w, cfg, env)
	switch cfg.Only {
	case "cdc":
		return runCDC(ctx, srv, cfg, w)
	case "retention":
		return runRetention(ctx, srv, cfg, w)
	case "mixed":
		return runMixed(ctx, srv, cfg, w)
	case "latency":
		return runLatency(ctx, srv, cfg, w)
	case "dashboard":
		return runDashboard(ctx, srv, cfg, w)
	case "xmin":
		return runXmin(ctx, srv, cfg, w)
	case "drains", "designs", "shapes":
		fresh := freshDatabases{srv: srv, cfg: cfg}
		ms := map[string]func() []*metric{
			"drains":  func() []*metric { return metrics(cfg, fresh)[2:4] },
			"designs": func() []*metric { return designMetrics(cfg, fresh) },
			"shapes":  func() []*metric { return shapeMetrics(cfg, fresh) },
		}[cfg.Only]()
		if err := runRounds(ctx, cfg.Rounds, ms, w); err != nil {
			return err
		}
		printTable(w, ms)
		return nil
	}
	ms := metrics(cfg, freshDatabases{srv: srv, cfg: cfg})
	if err := runRounds(ctx, cfg.Rounds, ms, w); err != nil {
		return err
	}
	printTable(w, ms)
	if err := runLatency(ctx, srv, cfg, w); err != nil {
		return err
	}
	if err := runMixed(ctx, srv, cfg, w); err != nil {
		return err
	}
	if err := runCDC(ctx, srv, cfg, w); err != nil {
		return err
	}
	return runRetention(ctx, srv, cfg, w)
}

// runRounds measures every metric once per round, esync and River back to
// back. The side that goes first alternates from round to round so neither
// always inherits the other's leftovers (autovacuum, cache, CPU boost).
func runRounds(ctx context.Context, rounds int, ms []*metric, w io.Writer) error {
	for round := 1; round <= rounds; round++ {
		for _, m := range ms {
			esyncFirst := round%2 == 1
			var em, rm measurement
			var err error
			for i := range 2 {
				if (i == 0) == esyncFirst {
					em, err = m.esync(ctx)
					err = wrap(err, "esync", m)
				} else if m.river != nil {
					rm, err = m.river(ctx)
					err = wrap(err, "River", m)
				}
				if err != nil {
					return err
				}
			}
			if b := m.Baseline; b != nil {
				em.Note = joinNotes(ratioTo(em.Rate, b.EsyncRates), em.Note)
				if m.river != nil {
					rm.Note = joinNotes(ratioTo(rm.Rate, b.RiverRates), rm.Note)
				}
			}
			m.EsyncRates = append(m.EsyncRates, em.Rate)
			line := fmt.Sprintf("round %d  %-58s esync %9s/s", round, m.Name, formatRate(em.Rate))
			if em.Note != "" {
				line += " (" + em.Note + ")"
			}
			if m.river != nil {
				m.RiverRates = append(m.RiverRates, rm.Rate)
				line += fmt.Sprintf("   River %9s/s  [%s]", formatRate(rm.Rate), m.RiverDoes)
				if rm.Note != "" {
					line += " (" + rm.Note + ")"
				}
			}
			fmt.Fprintln(w, line)
		}
	}
	return nil
}

// ratioTo says how x compares with the last of a baseline's rates, the
// one of the same round.
func ratioTo(x float64, baseline []float64) string {
	if len(baseline) == 0 || baseline[len(baseline)-1] <= 0 {
		return ""
	}
	return fmt.Sprintf("%.2f× baseline", x/baseline[len(baseline)-1])
}

// joinNotes joins the non-empty notes with "; ".
func joinNotes(notes ...string) string {
	var out []string
	for _, n := range notes {
		if n != "" {
			out = append(out, n)
		}
	}
	return strings.Join(out, "; ")
}

func wrap(err error, side string, m *metric) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s, %s: %w", side, m.Name, err)
}
