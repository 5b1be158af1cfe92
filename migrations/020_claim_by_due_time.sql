-- The claim as it runs today (it replaces the claims of 003 and 005; read
-- this file, not those, to know what runs).
--
-- Pending tasks are queued by due time: pending_idx holds them in
-- (do_after, id) order, so the claim's walk starts at the due tasks and
-- stops at now(), however many tasks are due later. A task added with no
-- delay is due when its transaction started, so queue order is still the
-- order tasks were added in. Adding a task supersedes the pending task of
-- its key at once (see the insert statement in driver_postgres_queries.go),
-- and the new task takes over the older one's place in the queue: a key
-- has one pending task, however often it is updated while its task runs.
-- The claim still supersedes what adding could not (tasks of a key added
-- concurrently, or committed late), so the invariants never depend on it.
DROP INDEX IF EXISTS {{.QObj "pending_idx"}};
CREATE INDEX {{.Obj "pending_idx"}} ON {{.Table}} (do_after, id)
	WHERE state IN ('READY', 'RETRY') AND task_name IS NOT NULL;

-- Claims up to p_limit tasks named in p_names, at most one per key, in one
-- round trip. It runs as two statements so that the second one reads a
-- snapshot taken after the per-key locks are held:
--
-- 1. Walk due pending rows in queue order (do_after, id) from p_from, skip
--    keys with a task in flight, and take a transaction-scoped advisory
--    lock per key without waiting. A key locked by a concurrent claim is
--    skipped. The walk starts at p_from, a position the caller knows no
--    pending task of these names lies before (the position of the first
--    pending row that a recent walk found, less a margin; NULL walks from
--    the start). Rows that a claim took leave index entries behind until
--    vacuum removes them, and while a long transaction holds the xmin
--    horizon back, vacuum cannot: walking from the start would read every
--    one of them on every claim. The position of the first due pending row
--    is left in the setting esync.claim_from for the caller.
-- 2. For each locked key, the newest due pending task wins if its name is
--    one of p_names and no task of the key is in flight (checked again in the
--    fresh snapshot: a claim that held the key's lock before us has
--    committed by now). The winner is set IN PROGRESS under a new lease
--    token; older pending tasks of the key become SUPERSEDED pointing at it.
--    Rows locked by another transaction are skipped, never waited for: a
--    producer whose open transaction supersedes a key's pending task holds
--    that row, and the key waits for its commit while the claim goes on.
--
-- A pending task older than a task of its key that has already started
-- never runs (invariant 2). Such a task appears when its transaction commits
-- after a newer task of the key was claimed (ids come from a sequence,
-- visibility from commit order), or when it is due again after the newer
-- task ran. It is superseded by the newest started task of its key, as are
-- the pending tasks older than that one. A task has started when it was
-- claimed: attempts > 0, or, after a retry or a release reset its attempts,
-- last_attempted later than created_at (both get the same now() when a task
-- is added).
--
-- The plans must not depend on statistics. A queue table swings from idle
-- to thousands of pending rows faster than statistics follow: after
-- VACUUM ANALYZE of an idle queue the planner takes the partial pending
-- indexes for one-row indexes and walks them end to end once per key or per
-- row. So every statement here can only be planned one way:
--  - plans are generic (made once per connection, not per call: planning
--    these statements costs more than running them for a few tasks);
--  - bitmap and sequential scans are off; step 1 is then an ordered walk of
--    pending_idx that stops after the rows it needs (LIMIT);
--  - correlated checks are subplans (OFFSET 0), probing an index per row;
--  - per-key lookups start from the array of locked keys (LATERAL) and say
--    "pending" the way key_pending_idx's predicate does, which pending_idx
--    cannot serve;
--  - updated rows are found by id, with a state recheck that no partial
--    index can serve, so only the primary key applies.
CREATE OR REPLACE FUNCTION {{.QObj "claim"}}(p_names text[], p_limit integer, p_lease interval, p_from timestamptz)
RETURNS SETOF {{.Table}}
LANGUAGE plpgsql VOLATILE
SET enable_bitmapscan = off
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $claim$
DECLARE
	-- One token per claim: with the task id it names the lease, and one
	-- random value per call costs less than one per task.
	v_token uuid := gen_random_uuid();
	v_from timestamptz := coalesce(p_from, '-infinity');
	v_first timestamptz;
	v_keys text[];
	v_winners bigint[];
	v_stale_keys text[];
	v_stale_by bigint[];
BEGIN
	SELECT p.do_after INTO v_first
	FROM {{.Table}} p
	WHERE p.state IN ('READY', 'RETRY') AND p.task_name IS NOT NULL
		AND p.do_after >= v_from AND p.do_after <= now()
		AND p.task_name = ANY (p_names)
	ORDER BY p.do_after, p.id
	LIMIT 1;
	PERFORM set_config('esync.claim_from', coalesce(extract(epoch FROM v_first), extract(epoch FROM now()))::text, true);

	-- A key with several due pending tasks appears once per task; the lock
	-- is re-entrant, so the key is locked once and counted more than once.
	-- Adding a task supersedes its key's pending task, so that is rare.
	SELECT array_agg(DISTINCT l.task_key) INTO v_keys
	FROM (
		SELECT s.task_key
		FROM (
			SELECT p.task_key
			FROM {{.Table}} p
			WHERE p.state IN ('READY', 'RETRY') AND p.task_name IS NOT NULL
				AND p.do_after >= coalesce(v_first, 'infinity') AND p.do_after <= now()
				AND p.task_name = ANY (p_names)
				AND NOT EXISTS (
					SELECT 1 FROM {{.Table}} r
					WHERE r.task_key = p.task_key AND r.state = 'IN PROGRESS'
					OFFSET 0)
			ORDER BY p.do_after, p.id
			LIMIT greatest(p_limit * 20, 1000)) s
		WHERE pg_try_advisory_xact_lock({{.LockClass}}, hashtext(s.task_key))
		LIMIT p_limit) l;

	IF v_keys IS NULL THEN
		RETURN;
	END IF;

	-- Per locked key: the newest due pending task, and the newest task of
	-- the key that has started after it, if any (one still in flight makes
	-- the key busy, checked below).
	WITH heads AS MATERIALIZED (
		SELECT h.id, h.task_key, h.task_name,
			(SELECT max(n.id) FROM {{.Table}} n
			 WHERE n.task_key = h.task_key AND n.id > h.id
				AND (n.attempts > 0 OR n.last_attempted > n.created_at)
				AND n.state <> 'IN PROGRESS') AS newer_started
		FROM unnest(v_keys) AS k(key)
		CROSS JOIN LATERAL (
			SELECT c.id, c.task_key, c.task_name
			FROM {{.Table}} c
			WHERE c.task_key = k.key
				AND c.state NOT IN ('IN PROGRESS', 'DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')
				AND c.finished_at IS NULL
				AND c.do_after <= now()
			ORDER BY c.id DESC
			LIMIT 1) h
	)
	SELECT
		array_agg(h.id) FILTER (WHERE h.newer_started IS NULL
			AND h.task_name = ANY (p_names)
			AND NOT EXISTS (
				SELECT 1 FROM {{.Table}} r
				WHERE r.task_key = h.task_key AND r.state = 'IN PROGRESS'
				OFFSET 0)),
		array_agg(h.task_key) FILTER (WHERE h.newer_started IS NOT NULL),
		array_agg(h.newer_started) FILTER (WHERE h.newer_started IS NOT NULL)
	INTO v_winners, v_stale_keys, v_stale_by
	FROM heads h;

	RETURN QUERY
	WITH claimed AS (
		UPDATE {{.Table}} t
		SET state = 'IN PROGRESS',
			attempts = t.attempts + 1,
			lease_token = v_token,
			lease_expires_at = now() + p_lease,
			last_attempted = now()
		WHERE t.id = ANY (ARRAY(
				SELECT w.id FROM {{.Table}} w
				WHERE w.id = ANY (v_winners)
					AND w.state NOT IN ('IN PROGRESS', 'DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')
				FOR UPDATE SKIP LOCKED))
			AND t.state NOT IN ('IN PROGRESS', 'DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')
		RETURNING t.*
	), supersessions AS (
		SELECT c.task_key, c.id AS by_id FROM claimed c
		UNION ALL
		SELECT x.task_key, x.by_id FROM unnest(v_stale_keys, v_stale_by) AS x(task_key, by_id)
	), superseded AS (
		UPDATE {{.Table}} s
		SET state = 'SUPERSEDED',
			superseded_by = o.by_id,
			finished_at = now(),
			last_attempt_message = 'superseded by task ' || o.by_id
		FROM (
			SELECT older.id, x.by_id
			FROM supersessions x
			CROSS JOIN LATERAL (
				SELECT p.id
				FROM {{.Table}} p
				WHERE p.task_key = x.task_key
					AND p.id < x.by_id
					AND p.state NOT IN ('IN PROGRESS', 'DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')
					AND p.finished_at IS NULL
				FOR UPDATE SKIP LOCKED) older
		) o
		WHERE s.id = o.id
			AND s.state NOT IN ('IN PROGRESS', 'DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')
	)
	SELECT * FROM claimed ORDER BY claimed.id;
END
$claim$;

-- The claim of 005's signature, for processes of the previous version
-- during a rolling upgrade: the same claim, walking from the start.
CREATE OR REPLACE FUNCTION {{.QObj "claim"}}(p_names text[], p_limit integer, p_lease interval)
RETURNS SETOF {{.Table}}
LANGUAGE sql VOLATILE
AS $claim$
	SELECT * FROM {{.QObj "claim"}}(p_names, p_limit, p_lease, NULL)
$claim$;
