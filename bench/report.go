package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// printHeader says what is measured and where.
func printHeader(w io.Writer, cfg config, env environment) {
	fmt.Fprintf(w, "esync vs River, %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	printEnvironment(w, env)
	fmt.Fprintf(w, "settings:   rounds=%d insert-n=%d drain-n=%d dedup-n=%d dedup-keys=%d workers=%d claim-limit=%d manager-concurrency=%d cdc-rows=%d cdc-partitions=%v\n",
		cfg.Rounds, cfg.InsertN, cfg.DrainN, cfg.DedupN, cfg.DedupKeys, cfg.Workers, cfg.ClaimLimit, cfg.ManagerConcurrency, cfg.CDCRows, cfg.CDCPartitions)
	fmt.Fprintf(w, "            shape-due=%d shape-later=%d shape-hot=%d shape-busy-keys=%d shape-busy-each=%d shape-done=%d producers=%d mixed-rate=%d mixed-for=%s\n\n",
		cfg.ShapeDue, cfg.ShapeLater, cfg.ShapeHot, cfg.ShapeBusyKeys, cfg.ShapeBusyEach, cfg.ShapeDone, cfg.Producers, cfg.MixedRate, cfg.MixedFor)
}

// printEnvironment says on what machine and server the figures are taken,
// and how durable the server's commits are.
func printEnvironment(w io.Writer, env environment) {
	fmt.Fprintf(w, "machine:    %d CPUs, %s, %s\n", env.CPUs, env.CPUModel, env.GoVersion)
	fmt.Fprintf(w, "postgres:   %s (%s)\n", env.Postgres, env.Source)
	fmt.Fprintf(w, "durability: %s\n", env.Durability)
}

// printTable prints the medians as a Markdown table, then each round's
// figures.
func printTable(w io.Writer, ms []*metric) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| metric | esync | River | esync (median) | River (median) | esync/River |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|")
	for _, m := range ms {
		e := median(m.EsyncRates)
		if m.river == nil {
			fmt.Fprintf(w, "| %s | %s | — | %s | — | — |\n", m.Name, m.EsyncDoes, formatRate(e))
			continue
		}
		r := median(m.RiverRates)
		ratio := "—"
		if r > 0 {
			ratio = fmt.Sprintf("%.2f×", e/r)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", m.Name, m.EsyncDoes, m.RiverDoes, formatRate(e), formatRate(r), ratio)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "each round (tasks/s):")
	for _, m := range ms {
		fmt.Fprintf(w, "  %s\n    esync: %s%s\n", m.Name, formatRates(m.EsyncRates), baselineRatios(m.EsyncRates, m.Baseline.rates(false)))
		if m.river != nil {
			fmt.Fprintf(w, "    River [%s]: %s%s\n", m.RiverDoes, formatRates(m.RiverRates), baselineRatios(m.RiverRates, m.Baseline.rates(true)))
		}
	}
}

// rates are one side's figures of every round; none for a nil metric.
func (m *metric) rates(river bool) []float64 {
	switch {
	case m == nil:
		return nil
	case river:
		return m.RiverRates
	}
	return m.EsyncRates
}

// baselineRatios says how each round's figure compares with the baseline's
// of the same round; nothing without a baseline.
func baselineRatios(xs, base []float64) string {
	if len(base) == 0 || len(base) != len(xs) {
		return ""
	}
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = "—"
		if base[i] > 0 {
			parts[i] = fmt.Sprintf("%.2f×", x/base[i])
		}
	}
	return " (to the baseline: " + strings.Join(parts, " · ") + ")"
}
