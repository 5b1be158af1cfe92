package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// cdcFigures are one round of the CDC measurement.
type cdcFigures struct {
	firstSync float64 // tasks emitted per second by the first run
	diff      float64 // source rows diffed per second with 1% changed
	heapMB    float64 // Go heap in use after the runs
	rssMB     float64 // this process's peak resident memory (VmHWM)
	pgOneMB   float64 // largest private memory of one PostgreSQL process during the runs
	pgAllMB   float64 // largest private memory of the database's PostgreSQL processes together
}

// measureCDC builds a customer table of CDCRows rows, times the first run of
// a CDC controller with a task target (every row emitted), marks every
// change synced as the wrapped action would, changes 1% of the rows and
// times the next diff.
func measureCDC(ctx context.Context, dsn string, cfg config) (cdcFigures, error) {
	d, err := queue.OpenPostgres(dsn)
	if err != nil {
		return cdcFigures{}, err
	}
	defer d.Close()
	if err := d.Migrate(ctx); err != nil {
		return cdcFigures{}, err
	}
	db := d.DB()
	exec := func(q string) error { _, err := db.ExecContext(ctx, q); return err }
	if err := exec(fmt.Sprintf(`
CREATE TABLE customer (id int PRIMARY KEY, name text, email text, tier text, updated timestamptz, score float8);
INSERT INTO customer SELECT g, 'name ' || g, 'c' || g || '@example.com', 'pro', now(), g / 7.0
FROM generate_series(1, %d) g;
ANALYZE customer`, cfg.CDCRows)); err != nil {
		return cdcFigures{}, err
	}
	r, err := queue.NewCDCRunner(d, "customers",
		queue.TrackColumns(`SELECT id AS object_id, name, email, tier, updated, score FROM customer`),
		queue.CDCTasks{Create: "crm.create", Update: "crm.update", Delete: "crm.delete"})
	if err != nil {
		return cdcFigures{}, err
	}
	var f cdcFigures
	sampler, err := sql.Open("postgres", dsn)
	if err != nil {
		return f, err
	}
	defer sampler.Close()
	sampler.SetMaxOpenConns(1)
	mem := watchBackends(ctx, sampler)
	defer mem.done()
	start := time.Now()
	n, err := r.Run(ctx)
	if err != nil {
		return f, err
	}
	if n != cfg.CDCRows {
		return f, fmt.Errorf("first run emitted %d, want %d", n, cfg.CDCRows)
	}
	f.firstSync = rate(n, time.Since(start))
	// What the wrapped action does on success, for every object at once.
	if err := splitExec(ctx, db, `UPDATE cdc_hash SET row_hash = pending_hash, pending_hash = NULL, pending_at = NULL`,
		`DELETE FROM message_queue`, `VACUUM ANALYZE cdc_hash`); err != nil {
		return f, err
	}
	if err := exec(`UPDATE customer SET name = name || '*' WHERE id % 100 = 0`); err != nil {
		return f, err
	}
	start = time.Now()
	n, err = r.Run(ctx)
	if err != nil {
		return f, err
	}
	if n != cfg.CDCRows/100 {
		return f, fmt.Errorf("diff emitted %d, want %d", n, cfg.CDCRows/100)
	}
	f.diff = rate(cfg.CDCRows, time.Since(start))
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f.heapMB = float64(ms.HeapInuse) / (1 << 20)
	f.rssMB = float64(rssKB("self", "VmHWM")) / 1024
	f.pgOneMB, f.pgAllMB = mem.done()
	return f, nil
}

// splitExec runs statements one by one (VACUUM cannot share a string).
func splitExec(ctx context.Context, db *sql.DB, stmts ...string) error {
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// runCDC measures the CDC runner (esync only: River has none) over the
// rounds and prints medians.
func runCDC(ctx context.Context, srv *queuetest.Server, cfg config, w io.Writer) error {
	var first, diff []float64
	var heap, rss, pgOne, pgAll float64
	for round := 1; round <= cfg.Rounds; round++ {
		name, dsn, err := srv.CreateDatabase(ctx)
		if err != nil {
			return err
		}
		f, err := measureCDC(ctx, dsn, cfg)
		srv.DropDatabase(ctx, name)
		if err != nil {
			return fmt.Errorf("cdc: %w", err)
		}
		fmt.Fprintf(w, "round %d  CDC, %d rows: first sync %s tasks/s, diff with 1%% changed %s rows/s, Go heap %.1f MB, process peak RSS %s, PostgreSQL private memory %s (one process), %s (all)\n",
			round, cfg.CDCRows, formatRate(f.firstSync), formatRate(f.diff), f.heapMB, formatMB(f.rssMB), formatMB(f.pgOneMB), formatMB(f.pgAllMB))
		first, diff = append(first, f.firstSync), append(diff, f.diff)
		heap, rss = max(heap, f.heapMB), max(rss, f.rssMB)
		pgOne, pgAll = max(pgOne, f.pgOneMB), max(pgAll, f.pgAllMB)
	}
	fmt.Fprintf(w, "\n| CDC, %d rows (esync only) | median |\n|---|---:|\n", cfg.CDCRows)
	fmt.Fprintf(w, "| first sync: tasks emitted/s | %s |\n", formatRate(median(first)))
	fmt.Fprintf(w, "| diff, 1%% changed: source rows/s | %s |\n", formatRate(median(diff)))
	fmt.Fprintf(w, "| Go heap in use after the runs (max) | %.1f MB |\n", heap)
	fmt.Fprintf(w, "| benchmark process, peak RSS (max) | %s |\n", formatMB(rss))
	fmt.Fprintf(w, "| PostgreSQL, private memory of one process (max) | %s |\n", formatMB(pgOne))
	fmt.Fprintf(w, "| PostgreSQL, private memory of the database's processes together (max) | %s |\n\n", formatMB(pgAll))
	return nil
}
