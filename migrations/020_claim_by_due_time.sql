-- The claim as it runs today (it replaces the claims of 003 and 005; read
-- this file, not those, to know what runs).
--
-- Pending tasks are queued by due time: pending_idx holds them in
-- (do_after, id) order, so the claim's walk starts at the due tasks and
-- stops at now(), however many tasks are due later. A task added with no
-- delay is due when its transaction started, so queue order is still the
-- order tasks were added in. Adding a task supersedes the pending task of
-- its key at once (see the add function below),
-- and the new task takes over the older one's place in the queue: a key
-- has one pending task, however often it is updated while its task runs.
-- The claim still supersedes what adding could not (tasks of a key added
-- concurrently, or committed late), so the invariants never depend on it.
DROP INDEX IF EXISTS {{.QObj "pending_idx"}};
CREATE INDEX {{.Obj "pending_idx"}} ON {{.Table}} (do_after, id)
	WHERE state IN ('READY', 'RETRY') AND task_name IS NOT NULL;

-- Adds tasks (arrays in, one task per index) and returns their ids in input
-- order, with one NOTIFY on p_channel per distinct task name of the tasks
-- left to run (none when p_channel is empty).
--
-- The newest task of a key in the call supersedes, at once, the key's
-- newest pending task and the call's earlier tasks of the key, and takes
-- the earliest of their places in the queue: a key has one pending task
-- however often it is added, and a hot key keeps its place. Older tasks are
-- superseded only when the newer one is due no later than they are (or
-- now): a task added with a delay leaves a task due before it to run first.
-- Rows another transaction holds are skipped, never waited for; so are
-- tasks committed after the statement started. The claim supersedes what
-- is left.
--
-- A function for the same reason as the claim: its plan must not depend on
-- statistics. Planned once per connection while the queue was empty, the
-- statement would update the superseded rows through a sequential scan.
CREATE OR REPLACE FUNCTION {{.QObj "add"}}(p_names text[], p_keys text[], p_datas text[], p_created_by text[],
	p_delays float8[], p_max_attempts integer[], p_channel text)
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE
SET enable_bitmapscan = off
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $add$
DECLARE
	v_ids bigint[];
	v_notified bigint;
	v_id bigint;
BEGIN
	-- One task, the usual call: the same, without the call's own dedup.
	IF cardinality(p_keys) = 1 THEN
		WITH n AS MATERIALIZED (
			SELECT nextval({{.Lit (.QObj "id_seq")}}) AS id, now() + make_interval(secs => p_delays[1]) AS due
		), older AS MATERIALIZED (
			SELECT o.id, o.do_after
			FROM n
			CROSS JOIN LATERAL (
				SELECT p.id, p.do_after
				FROM {{.Table}} p
				WHERE p.task_key = p_keys[1]
					AND p.state NOT IN ('IN PROGRESS', 'DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')
					AND p.finished_at IS NULL
				ORDER BY p.id DESC
				LIMIT 1
				FOR UPDATE SKIP LOCKED) o
			WHERE n.due <= greatest(o.do_after, now())
		), superseded AS (
			UPDATE {{.Table}} s
			SET state = 'SUPERSEDED', superseded_by = n.id, finished_at = now(),
				last_attempt_message = 'superseded by task ' || n.id
			FROM older o, n
			WHERE s.id = o.id
		)
		INSERT INTO {{.Table}} (id, task_name, task_key, data, created_by, state, last_attempt_message, do_after, max_attempts)
		SELECT n.id, p_names[1], p_keys[1], p_datas[1]::jsonb, p_created_by[1], 'READY', '',
			least(n.due, (SELECT o.do_after FROM older o)), p_max_attempts[1]
		FROM n
		RETURNING id INTO v_id;
		IF p_channel <> '' THEN
			PERFORM pg_notify(p_channel, p_names[1]);
		END IF;
		RETURN ARRAY[v_id];
	END IF;

	WITH x AS MATERIALIZED (
		SELECT nextval({{.Lit (.QObj "id_seq")}}) AS id, x.name, x.key, x.data, x.created_by,
			now() + make_interval(secs => x.delay) AS due, x.max_attempts
		FROM unnest(p_names, p_keys, p_datas, p_created_by, p_delays, p_max_attempts)
			AS x(name, key, data, created_by, delay, max_attempts)
	), newest AS MATERIALIZED (
		SELECT DISTINCT ON (x.key) x.id, x.key, x.due FROM x ORDER BY x.key, x.id DESC
	), call_older AS MATERIALIZED (
		SELECT x.id, n.id AS by_id, x.due
		FROM x JOIN newest n ON n.key = x.key AND x.id < n.id AND n.due <= greatest(x.due, now())
	), table_older AS MATERIALIZED (
		SELECT o.id, n.id AS by_id, o.do_after AS due
		FROM newest n
		CROSS JOIN LATERAL (
			SELECT p.id, p.do_after
			FROM {{.Table}} p
			WHERE p.task_key = n.key
				AND p.state NOT IN ('IN PROGRESS', 'DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')
				AND p.finished_at IS NULL
			ORDER BY p.id DESC
			LIMIT 1
			FOR UPDATE SKIP LOCKED) o
		WHERE n.due <= greatest(o.do_after, now())
	), superseded AS (
		UPDATE {{.Table}} s
		SET state = 'SUPERSEDED', superseded_by = o.by_id, finished_at = now(),
			last_attempt_message = 'superseded by task ' || o.by_id
		FROM table_older o
		WHERE s.id = o.id
	), places AS (
		SELECT u.by_id, min(u.due) AS due
		FROM (SELECT by_id, due FROM call_older UNION ALL SELECT by_id, due FROM table_older) u
		GROUP BY u.by_id
	), ins AS (
		INSERT INTO {{.Table}} (id, task_name, task_key, data, created_by, state, last_attempt_message,
			do_after, max_attempts, superseded_by, finished_at)
		SELECT x.id, x.name, x.key, x.data::jsonb, x.created_by,
			CASE WHEN c.by_id IS NULL THEN 'READY' ELSE 'SUPERSEDED' END,
			CASE WHEN c.by_id IS NULL THEN '' ELSE 'superseded by task ' || c.by_id END,
			least(x.due, p.due), x.max_attempts, c.by_id, CASE WHEN c.by_id IS NOT NULL THEN now() END
		FROM x
		LEFT JOIN call_older c ON c.id = x.id
		LEFT JOIN places p ON p.by_id = x.id
		RETURNING id, task_name, state
	)
	SELECT array_agg(id ORDER BY id),
		(SELECT count(pg_notify(p_channel, d.task_name)) FROM (SELECT DISTINCT task_name FROM ins WHERE state = 'READY') d WHERE p_channel <> '')
	INTO v_ids, v_notified
	FROM ins;
	RETURN v_ids;
END
$add$;

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
