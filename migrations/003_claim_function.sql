-- Replaced by 005_set_based_claim.sql; kept as applied by earlier versions.
--
-- Claims up to p_limit tasks named in p_names, at most one per key, in one
-- round trip:
--
-- 1. Walk due pending rows in queue order (the oldest pending row of a key
--    holds the key's place), skip keys with a task in flight, and take a
--    transaction-scoped advisory lock per key without waiting. A key locked
--    by a concurrent claim is skipped.
-- 2. Then, key by key, in statements whose snapshots are taken after every
--    lock is held (so a claim that held a key's lock before us has committed
--    and is seen): skip the key if a task of it is in flight; the newest due
--    pending task wins if its name is one of p_names; it is set IN PROGRESS
--    under a new lease token and the older pending tasks of the key become
--    SUPERSEDED pointing at it.
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
-- Step 2 reads each key with one statement of index lookups by key, then
-- writes all keys at once, naming them (task_key = ANY (...)) so that the
-- rows come from the per-key indexes whatever the statistics say. (A
-- version that joined on ids alone chose nested loops over all pending rows
-- after the queue had been analysed while empty, and slowed down a
-- hundredfold.)
CREATE OR REPLACE FUNCTION {{.QObj "claim"}}(p_names text[], p_limit integer, p_lease interval)
RETURNS SETOF {{.Table}}
LANGUAGE plpgsql VOLATILE
AS $claim$
DECLARE
	v_keys text[] := '{}';
	v_key text;
	v_scan_limit integer := greatest(p_limit * 20, 1000);
	v_head_id bigint;
	v_head_name text;
	v_busy boolean;
	v_started bigint;
	v_has_older boolean;
	v_win_keys text[] := '{}';
	v_win_ids bigint[] := '{}';
	v_older_keys text[] := '{}';
	v_stale_keys text[] := '{}';
	v_stale_by bigint[] := '{}';
BEGIN
	FOR v_key IN
		SELECT p.task_key
		FROM {{.Table}} p
		WHERE p.state IN ('READY', 'RETRY')
			AND p.do_after <= now()
			AND p.task_name = ANY (p_names)
			AND NOT EXISTS (
				SELECT 1 FROM {{.Table}} r
				WHERE r.task_key = p.task_key AND r.state = 'IN PROGRESS')
		ORDER BY p.id
		-- The limit also makes the planner walk the queue-order index
		-- instead of reading and sorting every pending row first.
		LIMIT v_scan_limit
	LOOP
		CONTINUE WHEN v_key = ANY (v_keys);
		IF pg_try_advisory_xact_lock({{.LockClass}}, hashtext(v_key)) THEN
			v_keys := v_keys || v_key;
			EXIT WHEN cardinality(v_keys) >= p_limit;
		END IF;
	END LOOP;

	FOREACH v_key IN ARRAY v_keys LOOP
		-- The newest due pending task; whether the key is in flight; the
		-- newest task of the key that has started; whether older pending
		-- tasks wait behind the head.
		SELECT h.id, h.task_name,
			EXISTS (SELECT 1 FROM {{.Table}} r WHERE r.task_key = v_key AND r.state = 'IN PROGRESS'),
			coalesce((SELECT max(n.id) FROM {{.Table}} n
				WHERE n.task_key = v_key AND (n.attempts > 0 OR n.last_attempted > n.created_at)), 0),
			EXISTS (SELECT 1 FROM {{.Table}} o
				WHERE o.task_key = v_key AND o.state IN ('READY', 'RETRY') AND o.id < h.id)
		INTO v_head_id, v_head_name, v_busy, v_started, v_has_older
		FROM {{.Table}} h
		WHERE h.task_key = v_key AND h.state IN ('READY', 'RETRY') AND h.do_after <= now()
		ORDER BY h.id DESC
		LIMIT 1;
		CONTINUE WHEN NOT FOUND OR v_busy;
		IF v_started > v_head_id THEN
			v_stale_keys := v_stale_keys || v_key;
			v_stale_by := v_stale_by || v_started;
			CONTINUE;
		END IF;
		CONTINUE WHEN NOT v_head_name = ANY (p_names);
		v_win_keys := v_win_keys || v_key;
		v_win_ids := v_win_ids || v_head_id;
		IF v_has_older THEN
			v_older_keys := v_older_keys || v_key;
		END IF;
	END LOOP;

	RETURN QUERY
	WITH claimed AS (
		UPDATE {{.Table}} t
		SET state = 'IN PROGRESS',
			attempts = t.attempts + 1,
			lease_token = gen_random_uuid(),
			lease_expires_at = now() + p_lease,
			last_attempted = now()
		WHERE t.task_key = ANY (v_win_keys) AND t.id = ANY (v_win_ids) AND t.state IN ('READY', 'RETRY')
		RETURNING t.*
	), supersessions AS (
		SELECT c.task_key, c.id AS by_id FROM claimed c WHERE c.task_key = ANY (v_older_keys)
		UNION ALL
		SELECT x.task_key, x.by_id FROM unnest(v_stale_keys, v_stale_by) AS x(task_key, by_id)
	), superseded AS (
		UPDATE {{.Table}} s
		SET state = 'SUPERSEDED',
			superseded_by = x.by_id,
			finished_at = now(),
			last_attempt_message = 'superseded by task ' || x.by_id
		FROM supersessions x
		WHERE s.task_key = ANY (v_older_keys || v_stale_keys) AND s.task_key = x.task_key
			AND s.id < x.by_id AND s.state IN ('READY', 'RETRY')
	)
	SELECT * FROM claimed ORDER BY claimed.id;
END
$claim$;
