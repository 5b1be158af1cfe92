package queue

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"github.com/hashicorp/go-multierror"
)

// A controller's objects fall into cdcSlots slots by the hash of their id.
// A partitioned diff splits the slots into partitions (a partition takes
// every slot whose low bits are its number) and runs each partition in its
// own transaction on its own connection, at the same time: each is a plain
// diff of a fraction of the rows, so PostgreSQL works on several cores.
//
// Each partition holds the controller's lock shared and its slots' locks
// exclusively, taken in ascending order, so that:
//   - two runs never emit the same object at once, whatever their
//     partition counts (a slot is locked by one run at a time), and the
//     second sees the first's pending marks, as with one transaction;
//   - a run in one transaction (a callbacks target, a batch limit) takes the
//     controller's lock exclusively and excludes every partition;
//   - no two runs deadlock (every run locks the controller first, then
//     slots in the same order).
//
// A partition that fails rolls back alone: what the others emitted stays
// emitted once, and the next run emits the rest.
const cdcSlots = 16

// cdcPartitionExpr is the SQL of the partition of an object id (text): the
// low bits of its hashtext, $12 being the partition count minus one.
func cdcPartitionExpr(objectID string) string {
	return "(hashtext(" + objectID + ") & $12::int)"
}

// WithCDCPartitions splits a CDCTasks diff into n partitions of the objects
// (1, 2, 4, 8 or 16; default 2), run at the same time on n connections of
// the driver's pool. More partitions use more cores of the database server,
// each for a smaller hash join. A run with a batch limit, and a callbacks
// target, runs in one transaction whatever n is.
func WithCDCPartitions(n int) CDCOption {
	return func(r *CDCRunnerAction) { r.partitions = n }
}

// checkCDCPartitions validates WithCDCPartitions.
func checkCDCPartitions(n int) error {
	switch n {
	case 1, 2, 4, 8, 16:
		return nil
	}
	return fmt.Errorf("queue: CDC partitions must be 1, 2, 4, 8 or 16, not %d", n)
}

// emitPartitioned runs the task emission of every partition at once and
// adds up what they emitted. Every partition runs to its end; the errors of
// those that failed are reported together.
func (r *CDCRunnerAction) emitPartitioned(ctx context.Context, hash string, p cdcEmitParams) (int, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
		errs  *multierror.Error
	)
	for k := 0; k < p.partitions; k++ {
		part := p
		part.partition = k
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := r.emitPartition(ctx, hash, part)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil {
				errs = multierror.Append(errs, fmt.Errorf("partition %d of %d: %w", part.partition, part.partitions, err))
			}
		}()
	}
	wg.Wait()
	if err := errs.ErrorOrNil(); err != nil {
		return total, err
	}
	return total, nil
}

// emitPartition emits one partition in its own transaction.
func (r *CDCRunnerAction) emitPartition(ctx context.Context, hash string, p cdcEmitParams) (int, error) {
	tx, err := r.driver.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if err := r.driver.cdcLockPartition(ctx, tx, r.controller, p.partitions, p.partition); err != nil {
		return 0, fmt.Errorf("lock: %w", err)
	}
	n, err := r.driver.cdcEmitTasks(ctx, tx, r.source.query, hash, p)
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return n, nil
}

// cdcLockPartition takes, for the rest of tx, the controller's lock shared
// and then the locks of the partition's slots in ascending order, and sets
// the diff's work_mem: 24MB, less than an unpartitioned diff's (see
// cdcLock), since each partition hashes a fraction of the rows (at 1M rows
// and 2 partitions still one batch) while more of its statement's
// tuplestores fill up at 5M rows. Lock and diff are separate statements,
// so the diff's snapshot is taken once the locks are held.
func (d *PostgresDriver) cdcLockPartition(ctx context.Context, tx *sql.Tx, controller string, partitions, partition int) error {
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock_shared(hashtextextended('esync-cdc:' || $1::text, 0)), set_config('work_mem', '24MB', true)`,
		controller); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `
SELECT count(pg_advisory_xact_lock(hashtextextended('esync-cdc:' || $1::text || ':slot:' || s, 0)))
FROM (SELECT s FROM generate_series(0, $2::int - 1) s WHERE s & $3::int = $4::int ORDER BY s) slots`,
		controller, cdcSlots, partitions-1, partition)
	return err
}
