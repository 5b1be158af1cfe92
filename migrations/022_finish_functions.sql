-- Writing results and extending leases (they replace the statements the
-- driver sent itself before this version). Extending leases runs as it is
-- here; writing results runs as 024_finish_in_id_order.sql has it.
--
-- Functions for the same reason as the claim and the add function
-- (020_claim_by_due_time.sql): their plans must not depend on statistics.
-- As plain statements, planned on a queue analysed while it was nearly
-- empty, a Finish of 1,000 results took the table's side of its join for a
-- one-row scan and read the 1,000 input rows once per row it updated: a
-- million comparisons, 150–230 ms instead of 8. So here:
--  - plans are generic, and bitmap and sequential scans are off;
--  - nested loops are off: the input arrays meet the table in a hash (or
--    merge) join, whose cost grows with the rows written, whatever the
--    estimates say;
--  - the rows are found by id through the primary key, locked in id order
--    first (a Finish and an extension of one process touch the same tasks,
--    and rows locked in the order of each call's own list would deadlock);
--    the state recheck is written so that no partial index can serve it;
--  - the check of a row that was not written is a subplan (OFFSET 0)
--    probing the primary key, run only for those rows.

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
			AND t.id = ANY (ARRAY(
				SELECT o.id FROM {{.Table}} o WHERE o.id = ANY (p_ids) ORDER BY o.id FOR UPDATE))
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

-- Extends leases: each task id held under its token gets p_lease seconds
-- from now. Returns the ids whose lease is no longer held. A row another
-- transaction holds (a Finish writing its result) is skipped, not waited
-- for, and counts as held while it is still in progress under its token.
CREATE OR REPLACE FUNCTION {{.QObj "extend_leases"}}(p_ids bigint[], p_tokens uuid[], p_lease float8)
RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_nestloop = off
SET plan_cache_mode = force_generic_plan
AS $extend$
BEGIN
	RETURN QUERY
	WITH written AS (
		UPDATE {{.Table}} t
		SET lease_expires_at = now() + make_interval(secs => p_lease)
		FROM unnest(p_ids, p_tokens) AS l(id, token)
		WHERE t.id = l.id AND t.lease_token = l.token
			AND t.state NOT IN ('READY', 'RETRY', 'DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')
			AND t.id = ANY (ARRAY(
				SELECT o.id FROM {{.Table}} o WHERE o.id = ANY (p_ids) ORDER BY o.id FOR UPDATE SKIP LOCKED))
		RETURNING t.id)
	SELECT l.id FROM unnest(p_ids, p_tokens) AS l(id, token)
	WHERE NOT EXISTS (SELECT 1 FROM written w WHERE w.id = l.id)
		AND NOT EXISTS (
			SELECT 1 FROM {{.Table}} t
			WHERE t.id = l.id AND t.lease_token = l.token
				AND t.state NOT IN ('READY', 'RETRY', 'DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')
			OFFSET 0);
END
$extend$;
