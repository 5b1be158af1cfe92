package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// cdcDiffRuns is how many diffs (each with a fresh 1% changed) one round
// times at each partition count; the round reports their median.
const cdcDiffRuns = 3

// cdcRound is one round of the CDC measurement, per partition count (in the
// order of config.CDCPartitions).
type cdcRound struct {
	bulk      []float64 // the queue's bulk insert, tasks/s, timed right before each first sync
	firstSync []float64 // tasks emitted per second by a first run
	diff      []float64 // source rows diffed per second with 1% changed (median of cdcDiffRuns)
	pgOneMB   []float64 // largest private memory of one PostgreSQL process during the runs
	pgAllMB   []float64 // largest private memory of the database's PostgreSQL processes together
	bulkCPU   []float64 // PostgreSQL CPU per task of the bulk insert, µs
	firstCPU  []float64 // PostgreSQL CPU per task emitted by the first sync, µs
	diffCPU   []float64 // PostgreSQL CPU per source row of a diff, µs (median of cdcDiffRuns)
	goCPU     []float64 // this process's CPU per source row of a diff, µs (median of cdcDiffRuns)
	heapMB    float64   // Go heap in use after the round
}

// measureCDC runs one round on a database of its own: a customer table of
// CDCRows rows, then for each partition count (the first one rotating from
// round to round) the queue's bulk insert of as many tasks followed at once
// by a first sync of a CDC controller with a task target, every row
// emitted; then, from the last first sync's state with every change marked
// synced as the wrapped action would, cdcDiffRuns diffs at each partition
// count in turn, each after changing 1% of the rows. Neighbouring figures
// see the same load, which on a shared machine matters more than rounds.
func measureCDC(ctx context.Context, dsn string, cfg config, round int) (cdcRound, error) {
	parts := cfg.CDCPartitions
	res := cdcRound{bulk: make([]float64, len(parts)), firstSync: make([]float64, len(parts)), diff: make([]float64, len(parts)),
		pgOneMB: make([]float64, len(parts)), pgAllMB: make([]float64, len(parts)),
		bulkCPU: make([]float64, len(parts)), firstCPU: make([]float64, len(parts)), diffCPU: make([]float64, len(parts)), goCPU: make([]float64, len(parts))}
	d, err := queue.OpenPostgres(dsn)
	if err != nil {
		return res, err
	}
	defer d.Close()
	// One connection per partition stays open between runs.
	d.DB().SetMaxIdleConns(slices.Max(parts) + 2)
	if err := d.Migrate(ctx); err != nil {
		return res, err
	}
	db := d.DB()
	if err := createCustomers(ctx, db, cfg.CDCRows); err != nil {
		return res, err
	}
	runners := make([]*queue.CDCRunnerAction, len(parts))
	for i, p := range parts {
		// Runners of one controller: they share its stored hashes.
		if runners[i], err = queue.NewCDCRunner(d, "customers",
			queue.TrackColumns(`SELECT id AS object_id, name, email, tier, updated, score FROM customer`),
			queue.CDCTasks{Create: "crm.create", Update: "crm.update", Delete: "crm.delete"},
			queue.WithCDCPartitions(p)); err != nil {
			return res, err
		}
	}
	sampler, err := sql.Open("postgres", dsn)
	if err != nil {
		return res, err
	}
	defer sampler.Close()
	sampler.SetMaxOpenConns(1)
	// watched runs f while sampling the backends' memory for partition
	// count i, and says what CPU PostgreSQL and this process spent.
	watched := func(i int, f func() error) (pg, goCPU time.Duration, err error) {
		mem := watchBackends(ctx, sampler)
		before := readGoCost()
		err = f()
		goCPU = readGoCost().cpu - before.cpu
		one, all := mem.done()
		res.pgOneMB[i], res.pgAllMB[i] = max(res.pgOneMB[i], one), max(res.pgAllMB[i], all)
		return mem.cpu(), goCPU, err
	}
	micros := func(d time.Duration, n int) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(n) }
	order := make([]int, len(parts))
	for j := range order {
		order[j] = (j + round - 1) % len(parts)
	}
	bulkN := min(cfg.CDCRows, cfg.CDCBulkMax)
	for _, i := range order {
		if err := splitExec(ctx, db, `TRUNCATE message_queue, cdc_hash`, `VACUUM ANALYZE message_queue`, `VACUUM ANALYZE cdc_hash`); err != nil {
			return res, err
		}
		pg, _, err := watched(i, func() (err error) {
			res.bulk[i], err = bulkInsert(ctx, d, bulkN, cfg.InsertN)
			return err
		})
		if err != nil {
			return res, fmt.Errorf("bulk insert: %w", err)
		}
		res.bulkCPU[i] = micros(pg, bulkN)
		if err := splitExec(ctx, db, `TRUNCATE message_queue`, `VACUUM ANALYZE message_queue`); err != nil {
			return res, err
		}
		pg, _, err = watched(i, func() error {
			start := time.Now()
			n, err := runners[i].Run(ctx)
			if err != nil {
				return err
			}
			if n != cfg.CDCRows {
				return fmt.Errorf("first run with %d partitions emitted %d, want %d", parts[i], n, cfg.CDCRows)
			}
			res.firstSync[i] = rate(n, time.Since(start))
			return nil
		})
		if err != nil {
			return res, err
		}
		res.firstCPU[i] = micros(pg, cfg.CDCRows)
	}
	diffs, pgCPU, goCPU := make([][]float64, len(parts)), make([][]float64, len(parts)), make([][]float64, len(parts))
	change := 0
	for run := 0; run < cdcDiffRuns; run++ {
		for _, i := range order {
			// What the wrapped action does on success, for every object at
			// once; then a fresh 1% of the rows changes.
			if err := splitExec(ctx, db, `UPDATE cdc_hash SET row_hash = pending_hash, pending_hash = NULL, pending_at = NULL WHERE pending_hash IS NOT NULL`,
				`TRUNCATE message_queue`, `VACUUM ANALYZE message_queue`, `VACUUM ANALYZE cdc_hash`,
				`UPDATE customer SET name = name || '*' WHERE id % 100 = `+strconv.Itoa(change%100), `VACUUM ANALYZE customer`); err != nil {
				return res, err
			}
			change++
			pg, gc, err := watched(i, func() error {
				start := time.Now()
				n, err := runners[i].Run(ctx)
				if err != nil {
					return err
				}
				if n != cfg.CDCRows/100 {
					return fmt.Errorf("diff with %d partitions emitted %d, want %d", parts[i], n, cfg.CDCRows/100)
				}
				diffs[i] = append(diffs[i], rate(cfg.CDCRows, time.Since(start)))
				return nil
			})
			if err != nil {
				return res, err
			}
			pgCPU[i], goCPU[i] = append(pgCPU[i], micros(pg, cfg.CDCRows)), append(goCPU[i], micros(gc, cfg.CDCRows))
		}
	}
	for i := range parts {
		res.diff[i], res.diffCPU[i], res.goCPU[i] = median(diffs[i]), median(pgCPU[i]), median(goCPU[i])
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.heapMB = float64(ms.HeapInuse) / (1 << 20)
	return res, nil
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

// bulkInsert times the queue's own bulk insert of n tasks with distinct
// keys, in TaskManager.AddMany calls of batch tasks: what the first sync's
// emission is compared with.
func bulkInsert(ctx context.Context, d *queue.PostgresDriver, n, batch int) (float64, error) {
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

// runCDC measures the CDC runner (esync only: River has none) at each
// partition count of cfg.CDCPartitions, side by side in every round, and
// prints each round's figures and then the medians.
func runCDC(ctx context.Context, srv *queuetest.Server, cfg config, w io.Writer) error {
	parts := cfg.CDCPartitions
	var rounds []cdcRound
	bulkN := min(cfg.CDCRows, cfg.CDCBulkMax)
	for round := 1; round <= cfg.Rounds; round++ {
		name, dsn, err := srv.CreateDatabase(ctx)
		if err != nil {
			return err
		}
		r, err := measureCDC(ctx, dsn, cfg, round)
		srv.DropDatabase(ctx, name)
		if err != nil {
			return fmt.Errorf("cdc: %w", err)
		}
		for i, p := range parts {
			fmt.Fprintf(w, "round %d  CDC, %d rows, %d partitions: bulk insert of %d tasks %s tasks/s, (PostgreSQL %.1f µs CPU a task), first sync right after %s tasks/s (%.2fx; PostgreSQL %.1f µs CPU a task), diff with 1%% changed %s rows/s (PostgreSQL %.2f µs CPU a row, Go %.3f), PostgreSQL private memory %s (one process), %s (all)\n",
				round, cfg.CDCRows, p, bulkN, formatRate(r.bulk[i]), r.bulkCPU[i], formatRate(r.firstSync[i]), r.firstSync[i]/r.bulk[i], r.firstCPU[i],
				formatRate(r.diff[i]), r.diffCPU[i], r.goCPU[i], formatMB(r.pgOneMB[i]), formatMB(r.pgAllMB[i]))
		}
		fmt.Fprintf(w, "round %d  Go heap in use after the round %.1f MB\n", round, r.heapMB)
		rounds = append(rounds, r)
	}
	// each collects one figure of every round, for partition count i.
	each := func(i int, f func(r cdcRound) float64) []float64 {
		var xs []float64
		for _, r := range rounds {
			xs = append(xs, f(r))
		}
		return xs
	}
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
	row("first sync: tasks emitted/s", func(i int) string {
		return formatRate(median(each(i, func(r cdcRound) float64 { return r.firstSync[i] })))
	})
	row(fmt.Sprintf("bulk insert of %d tasks right before it: tasks/s", bulkN), func(i int) string {
		return formatRate(median(each(i, func(r cdcRound) float64 { return r.bulk[i] })))
	})
	row("first sync / that bulk insert", func(i int) string {
		return fmt.Sprintf("%.2fx", median(each(i, func(r cdcRound) float64 { return r.firstSync[i] / r.bulk[i] })))
	})
	row(fmt.Sprintf("diff, 1%% changed: source rows/s (median of %d diffs a round)", cdcDiffRuns), func(i int) string {
		return formatRate(median(each(i, func(r cdcRound) float64 { return r.diff[i] })))
	})
	row("first sync: PostgreSQL CPU per task (µs)", func(i int) string {
		return fmt.Sprintf("%.1f", median(each(i, func(r cdcRound) float64 { return r.firstCPU[i] })))
	})
	row("bulk insert: PostgreSQL CPU per task (µs)", func(i int) string {
		return fmt.Sprintf("%.1f", median(each(i, func(r cdcRound) float64 { return r.bulkCPU[i] })))
	})
	row("diff: PostgreSQL CPU per source row (µs)", func(i int) string {
		return fmt.Sprintf("%.2f", median(each(i, func(r cdcRound) float64 { return r.diffCPU[i] })))
	})
	row("diff: Go CPU per source row (µs)", func(i int) string {
		return fmt.Sprintf("%.3f", median(each(i, func(r cdcRound) float64 { return r.goCPU[i] })))
	})
	row("PostgreSQL, private memory of one process (max)", func(i int) string {
		return formatMB(slices.Max(each(i, func(r cdcRound) float64 { return r.pgOneMB[i] })))
	})
	row("PostgreSQL, private memory of the database's processes together (max)", func(i int) string {
		return formatMB(slices.Max(each(i, func(r cdcRound) float64 { return r.pgAllMB[i] })))
	})
	heap := 0.0
	for _, r := range rounds {
		heap = max(heap, r.heapMB)
	}
	fmt.Fprintf(w, "\nGo heap in use after a round (max): %.1f MB; benchmark process, peak RSS over the whole run: %s\n\n",
		heap, formatMB(float64(rssKB("self", "VmHWM"))/1024))
	return nil
}
