package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// cdcDiffRuns is how many diffs (each with a fresh 1% changed) one CDC
// measurement times; it reports their median.
const cdcDiffRuns = 3

// cdcFigures are one measurement of the CDC runner at one partition count.
type cdcFigures struct {
	firstSync float64 // tasks emitted per second by the first run
	diff      float64 // source rows diffed per second with 1% changed (median of cdcDiffRuns)
	heapMB    float64 // Go heap in use after the runs
	pgOneMB   float64 // largest private memory of one PostgreSQL process during the runs
	pgAllMB   float64 // largest private memory of the database's PostgreSQL processes together
}

// measureCDC builds a customer table of CDCRows rows, times the first run of
// a CDC controller with a task target split into partitions (every row
// emitted), marks every change synced as the wrapped action would, then
// times cdcDiffRuns diffs, each after changing 1% of the rows.
func measureCDC(ctx context.Context, dsn string, cfg config, partitions int) (cdcFigures, error) {
	d, err := queue.OpenPostgres(dsn)
	if err != nil {
		return cdcFigures{}, err
	}
	defer d.Close()
	// One connection per partition stays open between runs.
	d.DB().SetMaxIdleConns(partitions + 2)
	if err := d.Migrate(ctx); err != nil {
		return cdcFigures{}, err
	}
	db := d.DB()
	if err := createCustomers(ctx, db, cfg.CDCRows); err != nil {
		return cdcFigures{}, err
	}
	r, err := queue.NewCDCRunner(d, "customers",
		queue.TrackColumns(`SELECT id AS object_id, name, email, tier, updated, score FROM customer`),
		queue.CDCTasks{Create: "crm.create", Update: "crm.update", Delete: "crm.delete"},
		queue.WithCDCPartitions(partitions))
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
	var diffs []float64
	for i := 0; i < cdcDiffRuns; i++ {
		// What the wrapped action does on success, for every object at once.
		if err := splitExec(ctx, db, `UPDATE cdc_hash SET row_hash = pending_hash, pending_hash = NULL, pending_at = NULL WHERE pending_hash IS NOT NULL`,
			`DELETE FROM message_queue`, `VACUUM ANALYZE cdc_hash`, `VACUUM ANALYZE message_queue`,
			`UPDATE customer SET name = name || '*' WHERE id % 100 = `+strconv.Itoa(i), `VACUUM ANALYZE customer`); err != nil {
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
		diffs = append(diffs, rate(cfg.CDCRows, time.Since(start)))
	}
	f.diff = median(diffs)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f.heapMB = float64(ms.HeapInuse) / (1 << 20)
	f.pgOneMB, f.pgAllMB = mem.done()
	return f, nil
}

// createCustomers makes the CDC source: rows customers of six columns of
// five types.
func createCustomers(ctx context.Context, db *sql.DB, rows int) error {
	_, err := db.ExecContext(ctx, fmt.Sprintf(`
CREATE TABLE customer (id int PRIMARY KEY, name text, email text, tier text, updated timestamptz, score float8);
INSERT INTO customer SELECT g, 'name ' || g, 'c' || g || '@example.com', 'pro', now(), g / 7.0
FROM generate_series(1, %d) g;
ANALYZE customer`, rows))
	return err
}

// measureBulkInsert times the queue's own bulk insert of n tasks with
// distinct keys, in TaskManager.AddMany calls of batch tasks, on a fresh
// queue: what the first sync's emission is compared with.
func measureBulkInsert(ctx context.Context, dsn string, n, batch int) (float64, error) {
	d, err := queue.OpenPostgres(dsn)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	if err := d.Migrate(ctx); err != nil {
		return 0, err
	}
	tm := queue.NewTaskManager(d)
	start := time.Now()
	for done := 0; done < n; done += batch {
		specs := make([]queue.TaskSpec, min(batch, n-done))
		for i := range specs {
			specs[i] = queue.TaskSpec{Name: noopTaskName, Key: "k" + strconv.Itoa(done+i), Data: noopArgs{Num: done + i}}
		}
		if _, err := tm.AddMany(ctx, specs); err != nil {
			return 0, err
		}
	}
	return rate(n, time.Since(start)), nil
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

// inFreshDatabase runs f on a database of its own on srv, dropped after.
func inFreshDatabase[T any](ctx context.Context, srv *queuetest.Server, f func(dsn string) (T, error)) (T, error) {
	name, dsn, err := srv.CreateDatabase(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	defer srv.DropDatabase(ctx, name)
	return f(dsn)
}

// runCDC measures the CDC runner (esync only: River has none) at each
// partition count of cfg.CDCPartitions, side by side in every round (the
// count that goes first rotates), with the queue's bulk insert of the same
// number of tasks in the same round, and prints medians.
func runCDC(ctx context.Context, srv *queuetest.Server, cfg config, w io.Writer) error {
	parts := cfg.CDCPartitions
	first, diff := make([][]float64, len(parts)), make([][]float64, len(parts))
	heap, pgOne, pgAll := make([]float64, len(parts)), make([]float64, len(parts)), make([]float64, len(parts))
	var bulk []float64
	bulkN := min(cfg.CDCRows, cfg.CDCBulkMax)
	for round := 1; round <= cfg.Rounds; round++ {
		b, err := inFreshDatabase(ctx, srv, func(dsn string) (float64, error) {
			return measureBulkInsert(ctx, dsn, bulkN, cfg.InsertN)
		})
		if err != nil {
			return fmt.Errorf("cdc: bulk insert: %w", err)
		}
		bulk = append(bulk, b)
		fmt.Fprintf(w, "round %d  bulk insert of %d tasks in calls of %d: %s tasks/s\n", round, bulkN, cfg.InsertN, formatRate(b))
		for j := range parts {
			i := (j + round - 1) % len(parts)
			f, err := inFreshDatabase(ctx, srv, func(dsn string) (cdcFigures, error) {
				return measureCDC(ctx, dsn, cfg, parts[i])
			})
			if err != nil {
				return fmt.Errorf("cdc, %d partitions: %w", parts[i], err)
			}
			fmt.Fprintf(w, "round %d  CDC, %d rows, %d partitions: first sync %s tasks/s (%.2fx bulk insert), diff with 1%% changed %s rows/s, Go heap %.1f MB, PostgreSQL private memory %s (one process), %s (all)\n",
				round, cfg.CDCRows, parts[i], formatRate(f.firstSync), f.firstSync/b, formatRate(f.diff), f.heapMB, formatMB(f.pgOneMB), formatMB(f.pgAllMB))
			first[i], diff[i] = append(first[i], f.firstSync), append(diff[i], f.diff)
			heap[i], pgOne[i], pgAll[i] = max(heap[i], f.heapMB), max(pgOne[i], f.pgOneMB), max(pgAll[i], f.pgAllMB)
		}
	}
	bm := median(bulk)
	fmt.Fprintf(w, "\n| CDC, %d rows (esync only), median of %d rounds |", cfg.CDCRows, cfg.Rounds)
	for _, p := range parts {
		fmt.Fprintf(w, " %d partitions |", p)
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---:|", len(parts)))
	row := func(name string, cell func(i int) string) {
		fmt.Fprintf(w, "| %s |", name)
		for i := range parts {
			fmt.Fprintf(w, " %s |", cell(i))
		}
		fmt.Fprintln(w)
	}
	row("first sync: tasks emitted/s", func(i int) string { return formatRate(median(first[i])) })
	row(fmt.Sprintf("first sync / bulk insert of %d (%s tasks/s)", bulkN, formatRate(bm)), func(i int) string {
		return fmt.Sprintf("%.2fx", median(first[i])/bm)
	})
	row(fmt.Sprintf("diff, 1%% changed: source rows/s (median of %d diffs a round)", cdcDiffRuns), func(i int) string { return formatRate(median(diff[i])) })
	row("Go heap in use after the runs (max)", func(i int) string { return fmt.Sprintf("%.1f MB", heap[i]) })
	row("PostgreSQL, private memory of one process (max)", func(i int) string { return formatMB(pgOne[i]) })
	row("PostgreSQL, private memory of the database's processes together (max)", func(i int) string { return formatMB(pgAll[i]) })
	fmt.Fprintf(w, "\nbenchmark process, peak RSS over the whole run: %s\n\n", formatMB(float64(rssKB("self", "VmHWM"))/1024))
	return nil
}
