package queue

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lib/pq"
)

// This file holds the CDC runner's SQL (the statement that records successes,
// which is the same on every call, is rendered once with the queue's other
// statements). The source query is SQL the application writes (never built
// from input); it is wrapped as a subquery.

// zeroHash is the target hash of a delete.
const zeroHash = "0::int8"

// cdcDiffSQL renders the diff of one controller: the source rows whose hash
// differs from the stored one, and stored objects gone from the source,
// minus what was already emitted and is still pending (unless that emission
// went stale). $1 controller, $2 pending timeout in seconds, $3 include the
// source row, $4 limit (0: none). A partitioned diff (cdc_partition.go)
// takes only the objects of one partition, $12 the mask and $13 the
// partition.
//
// The stored side is what the hash join keeps in memory, so it is as narrow
// as it can be: the pending hash only while it is fresh (a stale one reads
// as none, which is what the diff does with it), and whether the row holds
// no hash at all, instead of the pending time.
func (d *PostgresDriver) cdcDiffSQL(source, hash string, partitioned bool) string {
	srcPart, curPart := "", ""
	if partitioned {
		srcPart = "\n\tWHERE " + cdcPartitionExpr("(s.object_id)::text") + " = $13::int"
		curPart = " AND " + cdcPartitionExpr("object_id") + " = $13::int"
	}
	return d.names.render("cdcDiff", `
WITH src AS (
	-- OFFSET 0 keeps this a subquery, so each row's hash is computed once.
	-- The row itself is carried as a record and turned into JSON only for
	-- the changes: most rows of a diff have not changed.
	SELECT (s.object_id)::text AS object_id, `+hash+` AS hash,
		CASE WHEN $3::bool THEN s END AS rec
	FROM (`+source+`) s`+srcPart+`
	OFFSET 0
), cur AS (
	SELECT object_id, row_hash AS hash,
		CASE WHEN pending_at IS NULL OR pending_at >= now() - make_interval(secs => $2::float8) THEN pending_hash END AS live_pending,
		row_hash IS NULL AND pending_hash IS NULL AS empty
	FROM {{.CDC}} WHERE cdc_controller_id = $1`+curPart+`
), diff AS (
	SELECT coalesce(src.object_id, cur.object_id) AS object_id,
		CASE WHEN src.object_id IS NULL THEN 'delete' WHEN cur.hash IS NULL THEN 'create' ELSE 'update' END AS action,
		coalesce(src.hash, `+zeroHash+`) AS target,
		CASE WHEN $3::bool AND src.object_id IS NOT NULL THEN to_jsonb(src.rec) END AS row,
		cur.object_id IS NOT NULL AS tracked
	FROM src FULL JOIN cur ON cur.object_id = src.object_id
	WHERE (src.object_id IS NULL OR src.hash IS DISTINCT FROM cur.hash)
		AND cur.live_pending IS DISTINCT FROM coalesce(src.hash, `+zeroHash+`)
		AND NOT (src.object_id IS NULL AND cur.empty)
	LIMIT nullif($4::int, 0)
)`)
}

// cdcEmitTasks runs the diff and, in the same statement, records each change
// as pending and adds one task per change: the change is emitted once.
//
// Objects without a cdc_hash row (a first sync) get theirs by a plain
// insert, which costs about half an upsert. No other writer adds a row for
// an object that has none while its controller's lock is held: rows are
// added by emissions (under the lock) and by recording the success of an
// emitted task, whose object kept its row. Should one appear anyway, the
// run fails on the unique constraint, emits nothing, and the next run
// updates the row instead.
func (d *PostgresDriver) cdcEmitTasks(ctx context.Context, tx *sql.Tx, source, hash string, p cdcEmitParams) (int, error) {
	channel := ""
	if d.notify {
		channel = d.channel
	}
	q := d.cdcDiffSQL(source, hash, p.partitions > 1) + d.names.render("cdcEmit", `,
added AS (
	INSERT INTO {{.CDC}} (cdc_controller_id, object_id, pending_hash, pending_at)
	SELECT $1, object_id, target, now() FROM diff WHERE NOT tracked
), marked AS (
	INSERT INTO {{.CDC}} AS c (cdc_controller_id, object_id, pending_hash, pending_at)
	SELECT $1, object_id, target, now() FROM diff WHERE tracked
	ON CONFLICT (cdc_controller_id, object_id) DO UPDATE
	SET pending_hash = excluded.pending_hash, pending_at = excluded.pending_at, updated_at = now()
), tasks AS (
	INSERT INTO {{.Table}} (task_name, task_key, data, created_by, state, last_attempt_message, do_after, max_attempts)
	SELECT CASE d.action WHEN 'create' THEN $5::text WHEN 'update' THEN $6::text ELSE $7::text END,
		CASE WHEN char_length($8::text || d.object_id) <= 255 THEN $8::text || d.object_id
			ELSE left($8::text || d.object_id, 200) || '#' || md5($8::text || d.object_id) END,
		jsonb_build_object('controller', $1::text, 'object_id', d.object_id, 'action', d.action, 'hash', d.target::text)
			|| CASE WHEN d.row IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('row', d.row) END,
		$9::text, 'READY', '', now(), $10::int
	FROM diff d
	RETURNING task_name
)
SELECT (SELECT count(*) FROM diff),
	(SELECT count(pg_notify($11::text, x.n)) FROM (SELECT DISTINCT task_name AS n FROM tasks) x WHERE $11::text <> '')`)
	args := []any{p.controller, p.pendingTimeout.Seconds(), p.includeRow, p.limit,
		p.names[CDCActionCreate], p.names[CDCActionUpdate], p.names[CDCActionDelete], p.keyPrefix,
		p.createdBy, p.maxAttempts, channel}
	if p.partitions > 1 {
		args = append(args, p.partitions-1, p.partition)
	}
	var n, notified int
	err := tx.QueryRowContext(ctx, q, args...).Scan(&n, &notified)
	if err != nil {
		return 0, fmt.Errorf("queue: CDC emit: %w", err)
	}
	return n, nil
}

// cdcEmitParams are the settings of one emission.
type cdcEmitParams struct {
	controller     string
	pendingTimeout time.Duration
	includeRow     bool
	limit          int
	names          map[CDCAction]string
	keyPrefix      string
	createdBy      string
	maxAttempts    int
	// partitions is how many partitions the diff is split into (1: none)
	// and partition the one this statement emits.
	partitions, partition int
}

// cdcDiffRows streams the diff to fn, one change at a time.
func (d *PostgresDriver) cdcDiffRows(ctx context.Context, tx *sql.Tx, source, hash, controller string, includeRow bool, limit int, fn func(CDCObjectAction) error) error {
	rows, err := tx.QueryContext(ctx, d.cdcDiffSQL(source, hash, false)+` SELECT object_id, action, target::text, row FROM diff`,
		controller, 0.0, includeRow, limit)
	if err != nil {
		return fmt.Errorf("queue: CDC diff: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var o CDCObjectAction
		var action string
		var row []byte
		if err := rows.Scan(&o.ObjectID, &action, &o.Hash, &row); err != nil {
			return err
		}
		o.Action = CDCAction(action)
		if len(row) > 0 {
			o.Row = json.RawMessage(row)
		}
		if err := fn(o); err != nil {
			return err
		}
	}
	return rows.Err()
}

// cdcMarkSynced records objects as synced at their hash, in one statement:
// stored hashes take the new value, a pending emission of that hash is
// cleared, and objects whose delete went through are forgotten (unless a
// newer emission of them is pending).
func (d *PostgresDriver) cdcMarkSynced(ctx context.Context, controller string, objects []CDCObjectAction) error {
	if len(objects) == 0 {
		return nil
	}
	ids, hashes, deletes := make([]string, len(objects)), make([]string, len(objects)), make([]bool, len(objects))
	for i, o := range objects {
		ids[i], hashes[i], deletes[i] = o.ObjectID, o.Hash, o.Action == CDCActionDelete
	}
	_, err := d.stmts.exec(ctx, d.q.cdcSynced, controller, pq.Array(ids), pq.Array(hashes), pq.Array(deletes))
	if err != nil {
		return fmt.Errorf("queue: CDC mark synced: %w", err)
	}
	return nil
}

// cdcClearPending forgets a pending emission that failed for good, so the
// next diff emits the object again.
func (d *PostgresDriver) cdcClearPending(ctx context.Context, controller, objectID, hash string) error {
	_, err := d.db.ExecContext(ctx, d.names.render("cdcClear", `
UPDATE {{.CDC}} SET pending_hash = NULL, pending_at = NULL, updated_at = now()
WHERE cdc_controller_id = $1 AND object_id = $2 AND pending_hash = $3::int8`), controller, objectID, hash)
	if err != nil {
		return fmt.Errorf("queue: CDC clear pending: %w", err)
	}
	return nil
}

// ErrCDCHashVersion is returned when a controller's tracked columns (or
// their types) changed since its hashes were stored: new hashes would not
// compare with the stored ones. Re-baseline with WithCDCRebaseline.
var ErrCDCHashVersion = errors.New("queue: CDC hash version changed")

// cdcCheckVersion records a controller's hash version on first use and
// compares it afterwards. With rebaseline, a changed version recomputes the
// stored hashes of synced objects from the source, without emitting.
func (d *PostgresDriver) cdcCheckVersion(ctx context.Context, controller, name, version, source, hash string, rebaseline bool) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var stored string
	err = tx.QueryRowContext(ctx, `
WITH ins AS (
	INSERT INTO `+d.names.Schema+`.cdc_controller (cdc_controller_id, name, hash_version)
	VALUES ($1, $2, $3) ON CONFLICT (cdc_controller_id) DO NOTHING RETURNING hash_version)
SELECT hash_version FROM ins
UNION ALL
SELECT hash_version FROM `+d.names.Schema+`.cdc_controller WHERE cdc_controller_id = $1
LIMIT 1`, controller, name, version).Scan(&stored)
	if errors.Is(err, sql.ErrNoRows) {
		// A concurrent first run inserted the row after this statement's
		// snapshot was taken; a new statement sees it.
		err = tx.QueryRowContext(ctx, `SELECT hash_version FROM `+d.names.Schema+`.cdc_controller WHERE cdc_controller_id = $1`,
			controller).Scan(&stored)
	}
	if err != nil {
		return fmt.Errorf("queue: CDC controller %q: %w", name, err)
	}
	if stored == version {
		return tx.Commit()
	}
	if !rebaseline {
		return fmt.Errorf("%w: controller %q stored hashes as %s, the source now hashes as %s (its tracked columns or their types changed); re-baseline or restore the columns",
			ErrCDCHashVersion, name, stored, version)
	}
	if _, err := tx.ExecContext(ctx, d.names.render("cdcRebaseline", `
UPDATE {{.CDC}} c SET row_hash = src.hash, updated_at = now()
FROM (SELECT (s.object_id)::text AS object_id, `+hash+` AS hash FROM (`+source+`) s) src
WHERE c.cdc_controller_id = $1 AND c.object_id = src.object_id AND c.row_hash IS NOT NULL`), controller); err != nil {
		return fmt.Errorf("queue: CDC re-baseline %q: %w", name, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE `+d.names.Schema+`.cdc_controller SET hash_version = $2, updated_at = now() WHERE cdc_controller_id = $1`,
		controller, version); err != nil {
		return err
	}
	return tx.Commit()
}

// cdcLock takes the controller's lock exclusively for the rest of tx
// (waiting for a concurrent run of the same controller, partitioned or not,
// to commit first) and sets the diff's work_mem: 32MB (64MB for the hash
// join, PostgreSQL 15's hash_mem_multiplier being 2) keeps the stored hashes
// of 1M objects in one batch, and a backend's private memory at about 80MB
// at 1M rows and under 100MB at 5M here. A partitioned diff's backends
// (cdcLockPartition) each hash a fraction of the rows with the same setting.
func (d *PostgresDriver) cdcLock(ctx context.Context, tx *sql.Tx, controller string) error {
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('esync-cdc:' || $1::text, 0)), set_config('work_mem', '32MB', true)`, controller)
	return err
}

// checkCDCSource refuses a source that would break out of its subquery.
func checkCDCSource(source string) error {
	trimmed := strings.TrimSpace(strings.TrimRight(strings.TrimSpace(source), ";"))
	if trimmed == "" {
		return errors.New("queue: CDC source query is empty")
	}
	if strings.Contains(trimmed, ";") {
		return errors.New("queue: CDC source must be one query (no ';')")
	}
	return nil
}
