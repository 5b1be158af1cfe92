package main

import (
	"context"
	"fmt"
	"io"

	"github.com/esync/queue/queuetest"
)

// mixedFigures are one side's figures of the mixed workload over all
// rounds.
type mixedFigures struct {
	added, ran, backlog []float64
	waits, adds, runner latencies
}

// runMixed measures the mixed workload in interleaved rounds, each side on
// a fresh database: Producers goroutines add single tasks on distinct keys
// at MixedRate for MixedFor while the queue's runner drains them. It
// prints each round, then a table of the throughput achieved, insert→start
// p50 and p99, and the backlog left at the end.
func runMixed(ctx context.Context, srv *queuetest.Server, cfg config, w io.Writer) error {
	title := fmt.Sprintf("mixed load, %s single adds/s for %s", formatRate(float64(cfg.MixedRate)), cfg.MixedFor)
	load := []phase{{name: "mixed", rate: cfg.MixedRate, length: cfg.MixedFor}}
	figs := make([]mixedFigures, len(loadSides))
	for round := 1; round <= cfg.Rounds; round++ {
		for i := range loadSides {
			si := i
			if round%2 == 0 {
				si = len(loadSides) - 1 - i // alternate who goes first
			}
			side, f := loadSides[si], &figs[si]
			err := runLoad(ctx, srv, cfg, side, load, func(_ phase, p phaseFigures) {
				f.added, f.ran, f.backlog = append(f.added, p.added), append(f.ran, p.ran), append(f.backlog, float64(p.backlog))
				f.waits, f.adds, f.runner = append(f.waits, p.waits...), append(f.adds, p.adds...), append(f.runner, p.runner...)
				fmt.Fprintf(w, "round %d  %s  %-5s added %s/s  ran %s/s  insert→start p50 %s p99 %s (the add p50 %s p99 %s, then to the start p50 %s p99 %s)  backlog at the end %d\n",
					round, title, side.name, formatRate(p.added), formatRate(p.ran),
					formatWait(p.waits.quantile(0.5)), formatWait(p.waits.quantile(0.99)),
					formatWait(p.adds.quantile(0.5)), formatWait(p.adds.quantile(0.99)),
					formatWait(p.runner.quantile(0.5)), formatWait(p.runner.quantile(0.99)), p.backlog)
			})
			if err != nil {
				return err
			}
		}
	}
	e, r := figs[0], figs[1]
	fmt.Fprintf(w, "\n| %s, %d producers (%d rounds) | esync | River | esync/River |\n|---|---:|---:|---:|\n", title, cfg.Producers, cfg.Rounds)
	for _, row := range []struct {
		name string
		e, r float64
		text func(float64) string
	}{
		{"tasks added/s (median)", median(e.added), median(r.added), formatRate},
		{"tasks run/s (median)", median(e.ran), median(r.ran), formatRate},
		{"insert→start p50 (all rounds)", float64(e.waits.quantile(0.5)), float64(r.waits.quantile(0.5)), formatWaitNs},
		{"insert→start p99 (all rounds)", float64(e.waits.quantile(0.99)), float64(r.waits.quantile(0.99)), formatWaitNs},
		{"the add call alone, commit included, p50", float64(e.adds.quantile(0.5)), float64(r.adds.quantile(0.5)), formatWaitNs},
		{"the add call alone, commit included, p99", float64(e.adds.quantile(0.99)), float64(r.adds.quantile(0.99)), formatWaitNs},
		{"from the add's return to the start, p50", float64(e.runner.quantile(0.5)), float64(r.runner.quantile(0.5)), formatWaitNs},
		{"from the add's return to the start, p99", float64(e.runner.quantile(0.99)), float64(r.runner.quantile(0.99)), formatWaitNs},
		{"backlog at the end (median)", median(e.backlog), median(r.backlog), formatRate},
	} {
		ratio := "—"
		if row.r > 0 {
			ratio = fmt.Sprintf("%.2f×", row.e/row.r)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", row.name, row.text(row.e), row.text(row.r), ratio)
	}
	fmt.Fprintf(w, "\nesync: %s\nRiver: %s\n\n", loadSides[0].does, loadSides[1].does)
	return nil
}
