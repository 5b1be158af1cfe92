-- Claims up to p_limit tasks named in p_names, at most one per key, in one
-- round trip. It runs as two statements so that the second one reads a
-- snapshot taken after the per-key locks are held:
--
-- 1. Walk due pending rows in queue order (the oldest pending row of a key
--    holds the key's place), skip keys with a task in flight, and take a
--    transaction-scoped advisory lock per key without waiting. A key locked
--    by a concurrent claim is skipped.
-- 2. For each locked key, the newest due pending task wins if its name is
--    one of p_names and no task of the key is in flight (checked again in the
--    fresh snapshot: a claim that held the key's lock before us has
--    committed by now). The winner is set IN PROGRESS under a new lease
--    token; older pending tasks of the key become SUPERSEDED pointing at it.
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
CREATE OR REPLACE FUNCTION {{.QObj "claim"}}(p_names text[], p_limit integer, p_lease interval)
RETURNS SETOF {{.Table}}
LANGUAGE plpgsql VOLATILE
AS $claim$
DECLARE
	v_keys text[] := '{}';
	v_key text;
	v_scanned integer := 0;
	v_scan_limit integer := greatest(p_limit * 20, 1000);
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
	LOOP
		v_scanned := v_scanned + 1;
		EXIT WHEN v_scanned > v_scan_limit;
		CONTINUE WHEN v_key = ANY (v_keys);
		IF pg_try_advisory_xact_lock({{.LockClass}}, hashtext(v_key)) THEN
			v_keys := v_keys || v_key;
			EXIT WHEN cardinality(v_keys) >= p_limit;
		END IF;
	END LOOP;

	IF cardinality(v_keys) = 0 THEN
		RETURN;
	END IF;

	RETURN QUERY
	WITH heads AS (
		SELECT DISTINCT ON (c.task_key) c.id, c.task_key, c.task_name
		FROM {{.Table}} c
		WHERE c.task_key = ANY (v_keys)
			AND c.state IN ('READY', 'RETRY')
			AND c.do_after <= now()
		ORDER BY c.task_key, c.id DESC
	), checked AS (
		SELECT h.id, h.task_key, h.task_name,
			(SELECT max(n.id) FROM {{.Table}} n
			 WHERE n.task_key = h.task_key AND n.id > h.id
				AND (n.attempts > 0 OR n.last_attempted > n.created_at)) AS newer_started
		FROM heads h
	), winners AS (
		SELECT k.id
		FROM checked k
		WHERE k.newer_started IS NULL
			AND k.task_name = ANY (p_names)
			AND NOT EXISTS (
				SELECT 1 FROM {{.Table}} r
				WHERE r.task_key = k.task_key AND r.state = 'IN PROGRESS')
	), claimed AS (
		UPDATE {{.Table}} t
		SET state = 'IN PROGRESS',
			attempts = t.attempts + 1,
			lease_token = gen_random_uuid(),
			lease_expires_at = now() + p_lease,
			last_attempted = now()
		FROM winners w
		WHERE t.id = w.id AND t.state IN ('READY', 'RETRY')
		RETURNING t.*
	), supersessions AS (
		SELECT c.task_key, c.id AS by_id FROM claimed c
		UNION ALL
		SELECT k.task_key, k.newer_started FROM checked k WHERE k.newer_started IS NOT NULL
	), superseded AS (
		UPDATE {{.Table}} s
		SET state = 'SUPERSEDED',
			superseded_by = x.by_id,
			finished_at = now(),
			last_attempt_message = 'superseded by task ' || x.by_id
		FROM supersessions x
		WHERE s.task_key = x.task_key
			AND s.id < x.by_id
			AND s.state IN ('READY', 'RETRY')
	)
	SELECT * FROM claimed ORDER BY claimed.id;
END
$claim$;
