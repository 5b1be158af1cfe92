package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
	"golang.org/x/sync/errgroup"

	"github.com/esync/queue"
)

// The claim designs: what esync's per-key guarantees cost a drain, and
// what other claims would give on the same table. Each design drains
// DrainN no-op tasks on distinct keys with the drain's workers
// (Claim(ClaimLimit) → Finish), on esync's own table, indexes and finish
// function; only the claim differs:
//
//   - esync's claim, as it runs (migration 020): a key's newest due task
//     runs, never one older than a task of the key that already started,
//     and never two of a key at once, while adds never wait for each
//     other;
//   - one statement that keeps those guarantees only if a key can never
//     have two pending tasks: adds would have to make sure of that, with a
//     unique index on the pending tasks' keys, so that an add of a key
//     waits until the transaction of an earlier add of it ends (and two
//     transactions adding the same keys in opposite orders deadlock);
//   - a claim without per-key guarantees, as River's: the oldest due
//     tasks, whatever their keys.
//
// The last two are not esync: they show how far the claim alone could move
// the drain, and what the rest of a task's cost (its row versions and
// index entries) leaves.

// designClaim is the claim of a design: where adds to the walk's
// conditions on each due task p (%[1]s is the table).
type designClaim struct {
	name, does, where string
}

var claimDesigns = []designClaim{{
	name: "one statement, one pending task per key",
	does: "UPDATE … FOR UPDATE SKIP LOCKED with the in-flight and started checks; valid only if adds wait for each other",
	where: `
		AND NOT EXISTS (SELECT 1 FROM %[1]s r WHERE r.task_key = p.task_key AND r.state = 'IN PROGRESS' OFFSET 0)
		AND NOT EXISTS (SELECT 1 FROM %[1]s n WHERE n.task_key = p.task_key AND n.id > p.id
			AND (n.attempts > 0 OR n.last_attempted > n.created_at) AND n.state <> 'IN PROGRESS' OFFSET 0)`,
}, {
	name:  "no per-key guarantees",
	does:  "UPDATE … FOR UPDATE SKIP LOCKED of the oldest due tasks, as River's claim",
	where: "",
}}

// designMetrics are the rows of -only designs: esync's drain (beside
// River's) and each other design compared with it.
func designMetrics(cfg config, fresh freshDatabases) []*metric {
	baseline := metrics(cfg, fresh)[2] // the no-op drain by Claim → Finish workers
	baseline.Name = fmt.Sprintf("no-op drain of %d, esync's claim (tasks/s)", cfg.DrainN)
	out := []*metric{baseline}
	for _, d := range claimDesigns {
		out = append(out, &metric{
			Name:      fmt.Sprintf("no-op drain of %d, %s (tasks/s)", cfg.DrainN, d.name),
			EsyncDoes: d.does,
			esync: fresh.esync(func(b *esyncBench, ctx context.Context) (measurement, error) {
				return b.designDrain(ctx, d)
			}),
			Baseline: baseline,
		})
	}
	out = append(out, producerMetrics(cfg, fresh)...)
	return append(out, insertMetrics(cfg, fresh)...)
}

// designDrain preloads DrainN tasks and times the drain's workers
// claiming with design d, as timedDrain does with esync's claim.
func (b *esyncBench) designDrain(ctx context.Context, d designClaim) (measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	n := b.cfg.DrainN
	if _, err := b.tasks.AddMany(ctx, specs(n, 0)); err != nil { // as the drain it is compared with
		return measurement{}, fmt.Errorf("esync preload: %w", err)
	}
	// A function planned as esync's claim is (generic plans, bitmap and
	// sequential scans off), so that neither claim depends on statistics
	// more than the other.
	fn := pq.QuoteIdentifier(b.driver.Schema()) + ".design_claim"
	if _, err := b.driver.DB().ExecContext(ctx, fmt.Sprintf(`CREATE FUNCTION %[2]s(p_names text[], p_limit integer, p_token uuid)
RETURNS SETOF %[1]s
LANGUAGE plpgsql VOLATILE
SET enable_bitmapscan = off
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $claim$
BEGIN
	RETURN QUERY
	UPDATE %[1]s t
	SET state = 'IN PROGRESS', attempts = t.attempts + 1, lease_token = p_token,
		lease_expires_at = now() + interval '1 minute', last_attempted = now()
	WHERE t.id = ANY (ARRAY(
		SELECT p.id FROM %[1]s p
		WHERE p.state IN ('READY', 'RETRY') AND p.task_name IS NOT NULL AND p.do_after <= now()
			AND p.task_name = ANY (p_names)`+d.where+`
		ORDER BY p.do_after, p.id
		LIMIT p_limit
		FOR UPDATE SKIP LOCKED))
	RETURNING t.*;
END
$claim$`, b.table(), fn)); err != nil {
		return measurement{}, err
	}
	claim := `SELECT ` + claimedColumns + ` FROM ` + fn + `($1, $2, $3::uuid)`
	start, cost := time.Now(), readGoCost()
	var ran atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range b.cfg.Workers {
		g.Go(func() error { return b.designWork(gctx, claim, &ran) })
	}
	err := g.Wait()
	elapsed, spent := time.Since(start), cost.perTask(n)
	if err != nil {
		return measurement{}, err
	}
	if err := b.checkDrained(ctx, n, 0); err != nil {
		return measurement{}, err
	}
	return measurement{Rate: rate(n, elapsed), Note: spent}, nil
}

// claimedColumns are the columns esync's claim returns (the driver's task
// columns), so that every design sends the client the same rows.
const claimedColumns = `id, task_key, task_name, date_part('epoch', coalesce(created_at, last_attempted)), created_by, state,
	data, attempts, max_attempts, date_part('epoch', do_after), date_part('epoch', last_attempted), last_attempt_message,
	coalesce(superseded_by, 0), date_part('epoch', finished_at), lease_token::text, date_part('epoch', lease_expires_at)`

// designWork is one worker of a design's drain: claim, then Finish the
// claimed tasks DONE through esync's finish, until nothing is pending.
func (b *esyncBench) designWork(ctx context.Context, claim string, ran *atomic.Int64) error {
	names := pq.Array([]string{noopTaskName})
	var done []queue.Completion
	return b.finishUntilDrained(ctx, ran, func(ctx context.Context) ([]queue.Completion, error) {
		token := newToken()
		rows, err := b.driver.DB().QueryContext(ctx, claim, names, b.cfg.ClaimLimit, token)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		done = done[:0]
		cols := make([]any, 16)
		for i := range cols {
			cols[i] = new(any)
		}
		var id int64
		var data []byte
		cols[0], cols[6] = &id, &data
		for rows.Next() {
			if err := rows.Scan(cols...); err != nil {
				return nil, err
			}
			var decoded map[string]any // as the driver decodes a task's data
			if err := json.Unmarshal(data, &decoded); err != nil {
				return nil, err
			}
			done = append(done, queue.Completion{Lease: queue.Lease{TaskID: id, Token: token}, State: queue.TaskDone})
		}
		return done, rows.Close()
	})
}

// newToken is a random UUID (version 4), one per claim as esync's claim
// makes.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := fmt.Sprintf("%x", b[:])
	return strings.Join([]string{h[:8], h[8:12], h[12:16], h[16:20], h[20:]}, "-")
}

// What the one-statement claim would cost producers. Its adds must keep a
// key to one pending task, so the add of a key waits for the transaction
// of an earlier add of the same key to end: designAdd takes a per-key lock
// held to the end of the producer's transaction, supersedes the key's
// pending task and inserts, with a unique index on the pending tasks' keys
// behind it. esync's add supersedes what it can without waiting and leaves
// the rest to the claim.

// designAddSQL creates the add of the one-pending-task design in schema
// (%[1]s), for the table %[2]s and its id sequence %[3]s.
const designAddSQL = `
CREATE UNIQUE INDEX one_pending_per_key ON %[2]s (task_key) WHERE state IN ('READY', 'RETRY');
CREATE FUNCTION %[1]s.design_add(p_name text, p_key text, p_data jsonb) RETURNS bigint
LANGUAGE plpgsql AS $add$
DECLARE
	v_id bigint := nextval(%[3]s);
	v_due timestamptz;
BEGIN
	PERFORM pg_advisory_xact_lock(hashtext(p_key));
	UPDATE %[2]s SET state = 'SUPERSEDED', superseded_by = v_id, finished_at = now(),
		last_attempt_message = 'superseded by task ' || v_id
	WHERE task_key = p_key AND state IN ('READY', 'RETRY')
	RETURNING do_after INTO v_due;
	INSERT INTO %[2]s (id, task_name, task_key, data, created_by, state, last_attempt_message, do_after)
	VALUES (v_id, p_name, p_key, p_data, 'bench', 'READY', '', least(now(), v_due));
	RETURN v_id;
END
$add$`

// producerDesign adds one task of a key in the caller's transaction (or
// alone when tx is nil).
type producerDesign struct {
	name  string
	setup func(ctx context.Context, b *esyncBench) error
	add   func(ctx context.Context, b *esyncBench, tx *sql.Tx, key string, n int) error
}

var producerDesigns = []producerDesign{{
	name:  "esync's add",
	setup: func(context.Context, *esyncBench) error { return nil },
	add: func(ctx context.Context, b *esyncBench, tx *sql.Tx, key string, n int) error {
		if tx != nil {
			return b.tasks.AddTaskTx(ctx, tx, noopTaskName, key, noopArgs{Num: n})
		}
		_, err := b.tasks.Add(ctx, noopTaskName, key, noopArgs{Num: n})
		return err
	},
}, {
	name: "adds that wait for each other (one pending task per key)",
	setup: func(ctx context.Context, b *esyncBench) error {
		schema := pq.QuoteIdentifier(b.driver.Schema())
		seq := pq.QuoteLiteral(schema + "." + pq.QuoteIdentifier(b.driver.Table()+"_id_seq"))
		_, err := b.driver.DB().ExecContext(ctx, fmt.Sprintf(designAddSQL, schema, b.table(), seq))
		return err
	},
	add: func(ctx context.Context, b *esyncBench, tx *sql.Tx, key string, n int) error {
		q := fmt.Sprintf(`SELECT %s.design_add($1, $2, $3)`, pq.QuoteIdentifier(b.driver.Schema()))
		data := fmt.Sprintf(`{"num": %d}`, n)
		if tx != nil {
			_, err := tx.ExecContext(ctx, q, noopTaskName, key, data)
			return err
		}
		_, err := b.driver.DB().ExecContext(ctx, q, noopTaskName, key, data)
		return err
	},
}}

// hotKeyAddsPerProducer is how many single adds each producer makes in the
// hot-key measurement.
const hotKeyAddsPerProducer = 250

// producerMetrics are the producer rows of -only designs: Producers
// goroutines adding single tasks, each in its own transaction, all to one
// key, with each add design.
func producerMetrics(cfg config, fresh freshDatabases) []*metric {
	var out []*metric
	for _, d := range producerDesigns {
		m := &metric{
			Name:      fmt.Sprintf("%d producers adding %d single tasks each to one key, %s (tasks added/s)", cfg.Producers, hotKeyAddsPerProducer, d.name),
			EsyncDoes: d.name,
			esync: fresh.esync(func(b *esyncBench, ctx context.Context) (measurement, error) {
				return b.hotKeyAdds(ctx, d)
			}),
		}
		if len(out) > 0 {
			m.Baseline = out[0]
		}
		out = append(out, m)
	}
	return out
}

// hotKeyAdds times Producers goroutines adding hotKeyAddsPerProducer
// tasks each, one add a transaction, all to one key; the note says how
// long an add of the key waits behind a transaction that added the key
// and stays open for a second.
func (b *esyncBench) hotKeyAdds(ctx context.Context, d producerDesign) (measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	if err := d.setup(ctx, b); err != nil {
		return measurement{}, err
	}
	b.driver.DB().SetMaxIdleConns(b.cfg.Producers + 2)
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for p := range b.cfg.Producers {
		g.Go(func() error {
			for i := range hotKeyAddsPerProducer {
				if err := d.add(gctx, b, nil, "hot", p*hotKeyAddsPerProducer+i); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return measurement{}, err
	}
	n := b.cfg.Producers * hotKeyAddsPerProducer
	elapsed := time.Since(start)
	behind, err := b.addBehindOpenTransaction(ctx, d, time.Second)
	if err != nil {
		return measurement{}, err
	}
	return measurement{Rate: rate(n, elapsed), Note: fmt.Sprintf("an add behind a transaction that added its key and stays open %s: %s", time.Second, formatWait(behind))}, nil
}

// addBehindOpenTransaction adds a task of a key in a transaction that
// stays open for hold, and times an add of the same key made meanwhile.
func (b *esyncBench) addBehindOpenTransaction(ctx context.Context, d producerDesign, hold time.Duration) (time.Duration, error) {
	tx, err := b.driver.DB().BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if err := d.add(ctx, b, tx, "held", -1); err != nil {
		return 0, err
	}
	commit := time.AfterFunc(hold, func() { _ = tx.Commit() })
	defer commit.Stop()
	start := time.Now()
	err = d.add(ctx, b, nil, "held", -2)
	return time.Since(start), err
}

// insertMetrics are the bulk insert rows of -only designs: AddMany beside
// River's COPY, and the same rows by a plain INSERT, which supersedes
// nothing: what adding would cost if every key's older pending task were
// left to the claim (a hot key's pile-up would then stay in the queue).
func insertMetrics(cfg config, fresh freshDatabases) []*metric {
	baseline := metrics(cfg, fresh)[1] // AddMany against River's COPY
	return []*metric{baseline, {
		Name:      fmt.Sprintf("bulk insert, %d in one call, superseding nothing (tasks/s)", cfg.InsertN),
		EsyncDoes: "INSERT … SELECT FROM unnest of the same arrays, RETURNING id",
		esync:     fresh.esync((*esyncBench).plainInsert),
		Baseline:  baseline,
	}}
}

// plainInsert times one INSERT of InsertN tasks on distinct keys, built
// from the same arrays as AddMany's, without the add function.
func (b *esyncBench) plainInsert(ctx context.Context) (measurement, error) {
	batch := specs(b.cfg.InsertN, 0)
	start := time.Now()
	names, keys, datas := make([]string, len(batch)), make([]string, len(batch)), make([]string, len(batch))
	for i, s := range batch {
		data, err := json.Marshal(s.Data)
		if err != nil {
			return measurement{}, err
		}
		names[i], keys[i], datas[i] = s.Name, s.Key, string(data)
	}
	rows, err := b.driver.DB().QueryContext(ctx, fmt.Sprintf(`INSERT INTO %s (task_name, task_key, data, created_by, state, last_attempt_message)
SELECT x.name, x.key, x.data::jsonb, '', 'READY', '' FROM unnest($1::text[], $2::text[], $3::text[]) AS x(name, key, data)
RETURNING id`, b.table()), pq.Array(names), pq.Array(keys), pq.Array(datas))
	if err != nil {
		return measurement{}, err
	}
	ids := 0
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return measurement{}, err
		}
		ids++
	}
	if err := rows.Close(); err != nil {
		return measurement{}, err
	}
	elapsed := time.Since(start)
	if ids != len(batch) {
		return measurement{}, fmt.Errorf("plain insert: %d ids for %d tasks", ids, len(batch))
	}
	return measurement{Rate: rate(len(batch), elapsed)}, nil
}
