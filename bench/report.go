package main

import (
	"fmt"
	"io"
	"time"
)

// printHeader says what is measured and where.
func printHeader(w io.Writer, cfg config, env environment) {
	fmt.Fprintf(w, "esync vs River, %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "machine:    %d CPUs, %s, %s\n", env.CPUs, env.CPUModel, env.GoVersion)
	fmt.Fprintf(w, "postgres:   %s (%s)\n", env.Postgres, env.Source)
	fmt.Fprintf(w, "settings:   rounds=%d insert-n=%d drain-n=%d dedup-n=%d dedup-keys=%d workers=%d claim-limit=%d manager-concurrency=%d cdc-rows=%d cdc-partitions=%v\n\n",
		cfg.Rounds, cfg.InsertN, cfg.DrainN, cfg.DedupN, cfg.DedupKeys, cfg.Workers, cfg.ClaimLimit, cfg.ManagerConcurrency, cfg.CDCRows, cfg.CDCPartitions)
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
		fmt.Fprintf(w, "  %s\n    esync: %s\n", m.Name, formatRates(m.EsyncRates))
		if m.river != nil {
			fmt.Fprintf(w, "    River [%s]: %s\n", m.RiverDoes, formatRates(m.RiverRates))
		}
	}
}
