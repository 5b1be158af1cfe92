package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/esync/queue/queuetest"
)

// xminPhases are the phases of the pinned-xmin run: a baseline, a
// stretch during which a transaction that took a transaction id stays
// open (as a forgotten psql session or a long report would: VACUUM can
// remove no row that died after it began), a recovery, a stretch at 1.5×
// the rate, and a recovery again.
func xminPhases(cfg config) []phase {
	r := cfg.XminRate
	return []phase{
		{name: "baseline", rate: r, length: cfg.XminBaseline},
		{name: "xmin pinned", rate: r, length: cfg.XminHold, pinXmin: true},
		{name: "recovery", rate: r, length: cfg.XminRecovery},
		{name: "1.5× load", rate: r * 3 / 2, length: cfg.XminSurge},
		{name: "recovery", rate: r, length: cfg.XminRecovery},
	}
}

// runXmin puts esync and River (or the one -xmin-side names), one after
// the other on the same server, each on a fresh database, through the
// xmin phases, and prints a row per phase as it ends.
func runXmin(ctx context.Context, srv *queuetest.Server, cfg config, w io.Writer) error {
	phases := xminPhases(cfg)
	for _, side := range loadSides {
		if cfg.XminSide != "both" && !strings.EqualFold(cfg.XminSide, side.name) {
			continue
		}
		fmt.Fprintf(w, "pinned xmin, %s (%s), %d producers\n\n", side.name, side.does, cfg.Producers)
		fmt.Fprintln(w, "| phase | length | target/s | added/s | run/s | insert→start p50 | p99 | backlog at the end | n_dead_tup at the end | table size at the end |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		err := runLoad(ctx, srv, cfg, side, phases, func(p phase, f phaseFigures) {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %d | %d | %.1f MB |\n",
				p.name, p.length, formatRate(float64(p.rate)), formatRate(f.added), formatRate(f.ran),
				formatWait(f.waits.quantile(0.5)), formatWait(f.waits.quantile(0.99)),
				f.backlog, f.deadTuples, float64(f.tableBytes)/(1<<20))
		})
		if err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	return nil
}
