-- Writing results as it runs today: the finish function of
-- 022_finish_functions.sql (read that file for what it does and why its
-- plan cannot depend on statistics), without the statement that locked the
-- rows before the update.
--
-- A Finish takes its rows in id order, so that two statements waiting for
-- several of the same rows cannot deadlock: a Finish sent again while the
-- first one still runs, say (the other statements that lock several tasks
-- skip the rows they cannot lock). The statement that locked the rows in id
-- order first cost a lock record and a primary-key lookup per task, which
-- the update then did again. Here the update itself takes the rows in id
-- order: with nested loops and hash joins off, the input arrays meet the
-- table in a merge join, which reads both sides in id order (the table's
-- through its primary key), and the update locks each row as it reaches
-- it. TestFinishLocksRowsInIdOrder fails when a Finish takes them in
-- another order.

-- Writes results: the completion (state, message, delay in seconds) of
-- each task id under its lease token. Returns the ids whose lease was no
-- longer held; a task already finished under the same token (a Finish sent
-- again after its reply was lost) counts as written.
--
-- A RETRY of a task that has used its attempts becomes FAILED, and a
-- cancellation requested while it ran wins over a retry or a release.
-- READY releases a task that never ran to an end: the attempt does not
-- count. Every outcome but DONE (and a READY release without a message, or
-- of a task that never ran: "released unrun …") is added to the task's
-- errors, the last 20 kept; DONE leaves them as they are.
CREATE OR REPLACE FUNCTION {{.QObj "finish"}}(p_ids bigint[], p_tokens uuid[], p_states text[], p_messages text[], p_delays float8[])
RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_nestloop = off
SET enable_hashjoin = off
SET plan_cache_mode = force_generic_plan
AS $finish$
BEGIN
	RETURN QUERY
	WITH written AS (
		UPDATE {{.Table}} t
		SET state = CASE
				WHEN t.cancel_requested_at IS NOT NULL AND f.state IN ('RETRY', 'READY') THEN 'CANCELLED'
				WHEN f.state = 'RETRY' AND t.attempts >= t.max_attempts THEN 'FAILED'
				ELSE f.state END,
			last_attempt_message = CASE
				WHEN t.cancel_requested_at IS NOT NULL AND f.state IN ('RETRY', 'READY') THEN 'cancelled by request: ' || f.message
				WHEN f.state = 'RETRY' AND t.attempts >= t.max_attempts
				THEN f.message || ' (gave up after ' || t.attempts || ' attempts)' ELSE f.message END,
			errors = CASE WHEN f.state = 'DONE' OR (f.state = 'READY' AND t.cancel_requested_at IS NULL
					AND (f.message = '' OR starts_with(f.message, 'released unrun')))
				THEN t.errors
				ELSE jsonb_path_query_array(coalesce(t.errors, '[]') || jsonb_build_array(jsonb_build_object(
					'attempt', t.attempts, 'at', now(), 'state', CASE
					WHEN t.cancel_requested_at IS NOT NULL AND f.state IN ('RETRY', 'READY') THEN 'CANCELLED'
					WHEN f.state = 'RETRY' AND t.attempts >= t.max_attempts THEN 'FAILED'
					ELSE f.state END, 'message', f.message)), '$[last - 19 to last]') END,
			do_after = CASE WHEN f.state IN ('RETRY', 'READY') THEN now() + make_interval(secs => f.delay) ELSE t.do_after END,
			attempts = CASE WHEN f.state = 'READY' AND t.cancel_requested_at IS NULL THEN greatest(t.attempts - 1, 0) ELSE t.attempts END,
			finished_at = CASE WHEN t.cancel_requested_at IS NULL AND (f.state = 'READY' OR (f.state = 'RETRY' AND t.attempts < t.max_attempts))
				THEN NULL ELSE now() END,
			cancel_requested_at = NULL,
			lease_expires_at = NULL
		FROM unnest(p_ids, p_tokens, p_states, p_messages, p_delays) AS f(id, token, state, message, delay)
		WHERE t.id = f.id AND t.lease_token = f.token
			AND t.state NOT IN ('READY', 'RETRY', 'DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')
			AND t.id = ANY (p_ids)
		RETURNING t.id)
	SELECT l.id FROM unnest(p_ids, p_tokens) AS l(id, token)
	WHERE NOT EXISTS (SELECT 1 FROM written w WHERE w.id = l.id)
		AND NOT EXISTS (
			SELECT 1 FROM {{.Table}} t
			WHERE t.id = l.id AND t.lease_token = l.token
				AND t.state IN ('READY', 'RETRY', 'DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')
			OFFSET 0);
END
$finish$;
