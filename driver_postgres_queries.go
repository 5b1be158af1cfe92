package queue

import (
	"fmt"
	"hash/crc32"
	"strings"
	"text/template"

	"github.com/lib/pq"
)

// sqlNames holds the quoted names that queue SQL is rendered with. Only
// validated identifiers reach it, and they are quoted again on the way out.
type sqlNames struct {
	schema, table string

	Schema    string // quoted schema
	Table     string // quoted schema.table
	CDC       string // quoted schema.cdc_hash
	LockClass int32  // advisory lock class for this queue's per-key locks
}

func newSQLNames(schema, table string) sqlNames {
	return sqlNames{
		schema:    schema,
		table:     table,
		Schema:    quoteIdent(schema),
		Table:     quoteQualified(schema, table),
		CDC:       quoteQualified(schema, CDCTable),
		LockClass: int32(crc32.ChecksumIEEE([]byte(schema + "." + table))),
	}
}

// Obj quotes the name of an object that belongs to the queue table, such as
// an index: table_suffix.
func (n sqlNames) Obj(suffix string) string { return quoteIdent(n.table + "_" + suffix) }

// QObj is Obj qualified with the schema.
func (n sqlNames) QObj(suffix string) string { return quoteQualified(n.schema, n.table+"_"+suffix) }

// Lit quotes s as a string literal.
func (n sqlNames) Lit(s string) string { return pq.QuoteLiteral(s) }

// render fills a SQL template with the quoted names.
func (n sqlNames) render(name, text string) string {
	var b strings.Builder
	template.Must(template.New(name).Parse(text)).Execute(&b, n)
	return b.String()
}

// postgresQueries is every statement the driver runs, rendered once for its
// schema and table.
type postgresQueries struct {
	insert, insertDistinct, claim, finish, extend, rescueSelect, rescue, deleteFinished string
	get, list, listNewest, count, countByState, cancel, cancelKey, retry                string
	cancelUnhandled, scheduleRun, cdcSynced                                             string
	takePermits, holdStream, cancelRequested, pauseStream, resumeStream, pausedStreams  string
	exclusiveTake, exclusiveRenew, exclusiveRelease, exclusiveHeld                      string
}

func renderQueries(n sqlNames) postgresQueries {
	return postgresQueries{
		// Arrays in, the new IDs out in input order: see the add function
		// in migrations/020_claim_by_due_time.sql.
		insert: n.render("insert", `SELECT {{.QObj "add"}}($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::int[], $7::text)`),
		// The same for a call whose keys are all distinct: see
		// migrations/023_add_distinct_keys.sql.
		insertDistinct: n.render("insertDistinct", `SELECT {{.QObj "add_distinct"}}($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::int[], $7::text)`),

		// A claim for a paused stream ($4) takes nothing: LIMIT 0 ends the
		// claim's walk before it reads a row. Nor does the claim of an
		// Exclusive stream whose lease ($6 name, $7 token; '' for none) no
		// longer holds: fenced in the claim's own statement, not by a check
		// before it, so a holder that was taken over in between claims
		// nothing. The walk starts at $5 (epoch seconds; NULL: from the
		// start), and each row carries where the first due task was (see
		// claimWalks).
		claim: n.render("claim", `SELECT `+taskColumns+`, current_setting('esync.claim_from')::float8 FROM {{.QObj "claim"}}($1,
	CASE WHEN $4 <> '' AND (EXISTS (SELECT 1 FROM {{.QObj "paused_streams"}} WHERE stream = $4)
		OR EXISTS (SELECT 1 FROM {{.QObj "stream_limits"}} WHERE stream = $4 AND held_until > now())) THEN 0
	WHEN $7 <> '' AND NOT EXISTS (SELECT 1 FROM {{.QObj "exclusive"}} WHERE name = $6 AND token = $7 AND expires_at > now()) THEN 0
	ELSE $2 END,
	make_interval(secs => $3), to_timestamp($5::float8))`),

		// Results: see migrations/024_finish_in_id_order.sql; lease
		// extensions: migrations/022_finish_functions.sql.
		finish: n.render("finish", `SELECT * FROM {{.QObj "finish"}}($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::float8[])`),
		extend: n.render("extend", `SELECT * FROM {{.QObj "extend_leases"}}($1::bigint[], $2::uuid[], $3::float8)`),

		// Expired leases, locked for the rescue's update in the same
		// transaction. None while the server has been up for less than
		// $2 seconds: leases that expired while it was down were not their
		// holders' fault, and the holders get a lease to renew them.
		cancelRequested: n.render("cancelRequested", `
SELECT id FROM {{.Table}} WHERE id = ANY ($1::bigint[]) AND state = 'IN PROGRESS' AND cancel_requested_at IS NOT NULL`),

		// Up to $2 run permits of stream $1 within its window of $4
		// seconds (aligned to multiples of it) allowing $3 runs: how many
		// were granted and when the window ends.
		takePermits: n.render("takePermits", `
WITH w AS (
	SELECT to_timestamp(floor(extract(epoch FROM now()) / $4::float8) * $4::float8) AS start
), p AS (SELECT $2::int AS n, $3::int AS lim)
INSERT INTO {{.QObj "stream_limits"}} AS l (stream, window_start, used, last_grant)
SELECT $1, w.start, least(p.n, p.lim), least(p.n, p.lim) FROM w, p
ON CONFLICT (stream) DO UPDATE
SET last_grant = least($2::int, greatest($3::int - CASE WHEN l.window_start = excluded.window_start THEN l.used ELSE 0 END, 0)),
	used = CASE WHEN l.window_start = excluded.window_start THEN l.used ELSE 0 END
		+ least($2::int, greatest($3::int - CASE WHEN l.window_start = excluded.window_start THEN l.used ELSE 0 END, 0)),
	window_start = excluded.window_start
RETURNING l.last_grant, date_part('epoch', l.window_start + make_interval(secs => $4::float8))`),

		// Holds stream $1 on every process until $2 (a far side's
		// Retry-After), unless it is held longer already.
		holdStream: n.render("holdStream", `
INSERT INTO {{.QObj "stream_limits"}} AS l (stream, held_until) VALUES ($1, to_timestamp($2))
ON CONFLICT (stream) DO UPDATE SET held_until = greatest(l.held_until, excluded.held_until)`),

		pauseStream: n.render("pauseStream", `
WITH p AS (
	INSERT INTO {{.QObj "paused_streams"}} (stream, paused_by) VALUES ($1, $2)
	ON CONFLICT (stream) DO NOTHING
	RETURNING stream
)
SELECT count(pg_notify($3, 'pause ' || stream)) FROM p`),

		resumeStream: n.render("resumeStream", `
WITH r AS (DELETE FROM {{.QObj "paused_streams"}} WHERE stream = $1 RETURNING stream)
SELECT count(pg_notify($2, 'resume ' || stream)) FROM r`),

		pausedStreams: n.render("pausedStreams", `
SELECT stream, date_part('epoch', paused_at), paused_by FROM {{.QObj "paused_streams"}} ORDER BY stream`),

		rescueSelect: n.render("rescueSelect", `
SELECT id, task_name, attempts FROM {{.Table}}
WHERE state = 'IN PROGRESS' AND lease_expires_at < now()
	AND pg_postmaster_start_time() < now() - make_interval(secs => $2)
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED`),

		// The expired tasks back to RETRY, due after their retry policy's
		// backoff, or FAILED when they have used up their attempts.
		rescue: n.render("rescue", `
UPDATE {{.Table}} t
SET state = `+rescueState+`,
	finished_at = CASE WHEN t.cancel_requested_at IS NOT NULL OR t.attempts >= t.max_attempts THEN now() END,
	last_attempt_message = CASE WHEN t.cancel_requested_at IS NOT NULL THEN 'cancelled by request; ' ELSE '' END
		|| `+leaseExpired+`,
	errors = `+appendAttemptError(rescueState, leaseExpired)+`,
	cancel_requested_at = NULL,
	do_after = now() + make_interval(secs => r.delay),
	lease_token = NULL,
	lease_expires_at = NULL
FROM unnest($1::bigint[], $2::float8[]) AS r(id, delay)
WHERE t.id = r.id AND t.state = 'IN PROGRESS' AND t.lease_expires_at < now()`),

		deleteFinished: n.render("delete", `
DELETE FROM {{.Table}}
WHERE id IN (
	SELECT id FROM {{.Table}}
	WHERE finished_at < $1 AND state IN ('DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')
	LIMIT $2
	FOR UPDATE SKIP LOCKED)`),

		get: n.render("get", `SELECT `+taskColumns+`, errors FROM {{.Table}} WHERE id = $1`),

		list: n.render("list", `
SELECT `+taskColumns+` FROM {{.Table}}
WHERE ($1 = '' OR task_name = $1)
	AND ($2 = '' OR task_key = $2)
	AND (cardinality($3::text[]) = 0 OR state = ANY ($3::text[]))
	AND id > $4
ORDER BY id
LIMIT $5`),

		listNewest: n.render("listNewest", `
SELECT `+taskColumns+` FROM {{.Table}}
WHERE ($1 = '' OR task_name = $1)
	AND ($2 = '' OR task_key = $2)
	AND (cardinality($3::text[]) = 0 OR state = ANY ($3::text[]))
	AND ($4 = 0 OR id < $4)
ORDER BY id DESC
LIMIT $5`),

		count: n.render("count", `
SELECT count(*) FROM {{.Table}}
WHERE ($1 = '' OR task_name = $1)
	AND ($2 = '' OR task_key = $2)
	AND (cardinality($3::text[]) = 0 OR state = ANY ($3::text[]))`),

		countByState: n.render("countByState", `
SELECT state, count(*) FROM {{.Table}} WHERE ($1 = '' OR task_name = $1) GROUP BY state`),

		// A pending task is cancelled at once; for a running one the
		// cancellation is requested and announced ($3: the control
		// channel) to whichever process runs it.
		cancel: n.render("cancel", `
WITH pending AS (
	UPDATE {{.Table}}
	SET state = 'CANCELLED', finished_at = now(), last_attempt_message = $2
	WHERE id = $1 AND state IN ('READY', 'RETRY')
	RETURNING id
), running AS (
	UPDATE {{.Table}}
	SET cancel_requested_at = now()
	WHERE id = $1 AND state = 'IN PROGRESS'
	RETURNING id
)
SELECT (SELECT count(*) FROM pending), (SELECT count(pg_notify($3, 'cancel ' || id)) FROM running)`),

		cancelKey: n.render("cancelKey", `
UPDATE {{.Table}}
SET state = 'CANCELLED', finished_at = now(), last_attempt_message = $2
WHERE task_key = $1 AND state IN ('READY', 'RETRY')`),

		// Only when no newer task of the key has started: invariant 2, never
		// back in time. A task has started when attempts > 0 or, once a retry
		// or a release reset its attempts, when last_attempted is later than
		// created_at (both get the same now() when the task is added).
		retry: n.render("retry", `
UPDATE {{.Table}} t
SET state = 'READY', attempts = 0, do_after = now(), finished_at = NULL,
	last_attempt_message = 'retried by request: ' || t.last_attempt_message
WHERE t.id = $1 AND t.state IN ('FAILED', 'CANCELLED')
	AND NOT EXISTS (
		SELECT 1 FROM {{.Table}} n
		WHERE n.task_key = t.task_key AND n.id > t.id
			AND (n.attempts > 0 OR n.last_attempted > n.created_at)
			AND n.state <> 'IN PROGRESS')
	AND NOT EXISTS (
		SELECT 1 FROM {{.Table}} r
		WHERE r.task_key = t.task_key AND r.id > t.id AND r.state = 'IN PROGRESS')`),

		// Due pending tasks whose name no handler of this process knows.
		cancelUnhandled: n.render("cancelUnhandled", `
UPDATE {{.Table}}
SET state = 'CANCELLED', finished_at = now(),
	last_attempt_message = 'no handler registered for task name "' || task_name || '"'
WHERE id IN (
	SELECT id FROM {{.Table}}
	WHERE state IN ('READY', 'RETRY') AND task_name IS NOT NULL AND do_after <= now() AND task_name <> ALL ($1::text[])
	ORDER BY do_after, id
	LIMIT $2
	FOR UPDATE SKIP LOCKED)`),

		// A scheduled run starts only if no run of the schedule started
		// within the window, on any process.
		scheduleRun: n.render("scheduleRun", `
INSERT INTO {{.QObj "schedule"}} AS s (name, last_started, started_by)
VALUES ($1, now(), $2)
ON CONFLICT (name) DO UPDATE SET last_started = now(), started_by = $2
WHERE s.last_started <= now() - make_interval(secs => $3)
RETURNING 1`),

		// An Exclusive stream's lease ($1 name, $2 token, $3 holder, $4
		// seconds): taken when free or expired, with a larger fence.
		exclusiveTake: n.render("exclusiveTake", `
INSERT INTO {{.QObj "exclusive"}} AS e (name, token, fence, held_by, acquired_at, expires_at)
VALUES ($1, $2, 1, $3, now(), now() + make_interval(secs => $4))
ON CONFLICT (name) DO UPDATE SET token = EXCLUDED.token, fence = e.fence + 1, held_by = EXCLUDED.held_by,
	acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at
WHERE e.expires_at <= now()
RETURNING fence`),
		// Renewed only by the holder whose token it still carries.
		exclusiveRenew: n.render("exclusiveRenew", `
UPDATE {{.QObj "exclusive"}} SET expires_at = now() + make_interval(secs => $3)
WHERE name = $1 AND token = $2`),
		// Whether the lease holds; NULL once it no longer carries the token.
		exclusiveHeld: n.render("exclusiveHeld", `
SELECT (SELECT expires_at > now() FROM {{.QObj "exclusive"}} WHERE name = $1 AND token = $2)`),
		// Released by expiring at once; the row keeps the fence.
		exclusiveRelease: n.render("exclusiveRelease", `
UPDATE {{.QObj "exclusive"}} SET expires_at = now(), token = ''
WHERE name = $1 AND token = $2`),

		// A CDC controller's objects recorded as synced ($1 controller; ids,
		// hashes and whether each was a delete): see cdcMarkSynced.
		cdcSynced: n.render("cdcSynced", `
WITH o AS (
	SELECT x.id, x.hash, x.del FROM unnest($2::text[], $3::int8[], $4::bool[]) AS x(id, hash, del)
), forgotten AS (
	DELETE FROM {{.CDC}} c USING o
	WHERE o.del AND c.cdc_controller_id = $1 AND c.object_id = o.id
		AND (c.pending_hash IS NULL OR c.pending_hash = `+zeroHash+`)
), deleted_but_pending AS (
	UPDATE {{.CDC}} c SET row_hash = NULL, updated_at = now()
	FROM o
	WHERE o.del AND c.cdc_controller_id = $1 AND c.object_id = o.id
		AND c.pending_hash <> `+zeroHash+`
)
INSERT INTO {{.CDC}} AS c (cdc_controller_id, object_id, row_hash)
SELECT $1, o.id, nullif(o.hash, `+zeroHash+`) FROM o WHERE NOT o.del
ON CONFLICT (cdc_controller_id, object_id) DO UPDATE
SET row_hash = excluded.row_hash,
	pending_hash = CASE WHEN c.pending_hash = coalesce(excluded.row_hash, `+zeroHash+`) THEN NULL ELSE c.pending_hash END,
	pending_at = CASE WHEN c.pending_hash = coalesce(excluded.row_hash, `+zeroHash+`) THEN NULL ELSE c.pending_at END,
	updated_at = now()`),
	}
}

// rescueState is the state the rescue leaves a task whose lease expired in.
const rescueState = `CASE WHEN t.cancel_requested_at IS NOT NULL THEN 'CANCELLED'
		WHEN t.attempts >= t.max_attempts THEN 'FAILED' ELSE 'RETRY' END`

// leaseExpired is the message of an attempt whose lease expired.
const leaseExpired = `'lease expired: the worker stopped or could not reach the database'`

// maxAttemptErrors bounds the errors a task keeps (the newest ones), so a
// task retried forever does not grow without end. The finish function
// (migrations/024_finish_in_id_order.sql) keeps as many.
const maxAttemptErrors = 20

// appendAttemptError is task t's errors with the outcome of its current
// attempt appended (state and message are SQL expressions), the oldest
// ones dropped beyond maxAttemptErrors.
func appendAttemptError(state, message string) string {
	return fmt.Sprintf(`jsonb_path_query_array(coalesce(t.errors, '[]') || jsonb_build_array(jsonb_build_object(
		'attempt', t.attempts, 'at', now(), 'state', %s, 'message', %s)), '$[last - %d to last]')`,
		state, message, maxAttemptErrors-1)
}
