-- Adding tasks whose keys are all distinct (most bulk adds: a table's rows,
-- a batch of customers), as the add function of 020_claim_by_due_time.sql
-- does without the part that finds the call's own duplicates: no sort of
-- the call's keys, no join of the call with itself. The caller checks that
-- the keys are distinct; a call with a key twice goes through add.
--
-- Each task supersedes, at once, its key's newest pending task (unless
-- that one is due before it) and takes the earlier of the two places in
-- the queue. Rows another transaction holds are skipped, never waited for;
-- the claim supersedes what is left. Planned as add is: generic plans,
-- bitmap and sequential scans off.
CREATE OR REPLACE FUNCTION {{.QObj "add_distinct"}}(p_names text[], p_keys text[], p_datas text[], p_created_by text[],
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
BEGIN
	WITH x AS MATERIALIZED (
		SELECT nextval({{.Lit (.QObj "id_seq")}}) AS id, x.name, x.key, x.data, x.created_by,
			now() + make_interval(secs => x.delay) AS due, x.max_attempts
		FROM unnest(p_names, p_keys, p_datas, p_created_by, p_delays, p_max_attempts)
			AS x(name, key, data, created_by, delay, max_attempts)
	), table_older AS MATERIALIZED (
		SELECT o.id, x.id AS by_id, o.do_after AS due
		FROM x
		CROSS JOIN LATERAL (
			SELECT p.id, p.do_after
			FROM {{.Table}} p
			WHERE p.task_key = x.key
				AND p.state NOT IN ('IN PROGRESS', 'DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')
				AND p.finished_at IS NULL
			ORDER BY p.id DESC
			LIMIT 1
			FOR UPDATE SKIP LOCKED) o
		WHERE x.due <= greatest(o.do_after, now())
	), superseded AS (
		UPDATE {{.Table}} s
		SET state = 'SUPERSEDED', superseded_by = o.by_id, finished_at = now(),
			last_attempt_message = 'superseded by task ' || o.by_id
		FROM table_older o
		WHERE s.id = o.id
	), ins AS (
		INSERT INTO {{.Table}} (id, task_name, task_key, data, created_by, state, last_attempt_message, do_after, max_attempts)
		SELECT x.id, x.name, x.key, x.data::jsonb, x.created_by, 'READY', '', least(x.due, o.due), x.max_attempts
		FROM x
		LEFT JOIN table_older o ON o.by_id = x.id
		RETURNING id, task_name
	)
	SELECT array_agg(id ORDER BY id),
		(SELECT count(pg_notify(p_channel, d.task_name)) FROM (SELECT DISTINCT task_name FROM ins) d WHERE p_channel <> '')
	INTO v_ids, v_notified
	FROM ins;
	RETURN v_ids;
END
$add$;
