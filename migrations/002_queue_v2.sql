-- Turns the original table into the esync v2 queue: an ordered id, attempts,
-- leases, supersession and finish times, plus the indexes the claim needs.
-- Existing rows are kept; READY rows stay runnable.
ALTER TABLE {{.Table}}
	ADD COLUMN IF NOT EXISTS id bigint,
	ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0,
	ADD COLUMN IF NOT EXISTS max_attempts integer NOT NULL DEFAULT 25,
	ADD COLUMN IF NOT EXISTS lease_token uuid,
	ADD COLUMN IF NOT EXISTS lease_expires_at timestamptz,
	ADD COLUMN IF NOT EXISTS superseded_by bigint,
	ADD COLUMN IF NOT EXISTS finished_at timestamptz,
	ALTER COLUMN task_key TYPE varchar(255),
	ALTER COLUMN created_by SET DEFAULT '',
	ALTER COLUMN last_attempt_message SET DEFAULT '';

-- Number the existing rows in the order they were created, then hand out
-- later ids from a sequence.
CREATE SEQUENCE IF NOT EXISTS {{.QObj "id_seq"}} OWNED BY {{.Table}}.id;
WITH numbered AS (
	SELECT message_queue_id, row_number() OVER (ORDER BY created_at NULLS FIRST, last_attempted, message_queue_id) AS n
	FROM {{.Table}}
)
UPDATE {{.Table}} t SET id = numbered.n FROM numbered WHERE t.message_queue_id = numbered.message_queue_id;
SELECT setval({{.Lit (.QObj "id_seq")}}, coalesce(max(id), 0) + 1, false) FROM {{.Table}};
ALTER TABLE {{.Table}}
	ALTER COLUMN id SET DEFAULT nextval({{.Lit (.QObj "id_seq")}}),
	ALTER COLUMN id SET NOT NULL;

-- The id becomes the primary key; message_queue_id stays as a column.
DO $migrate$
DECLARE pk name;
BEGIN
	SELECT conname INTO pk FROM pg_constraint
	WHERE conrelid = {{.Lit .Table}}::regclass AND contype = 'p';
	IF pk IS NOT NULL THEN
		EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', {{.Lit .Table}}, pk);
	END IF;
END
$migrate$;
ALTER TABLE {{.Table}} ADD CONSTRAINT {{.Obj "pkey"}} PRIMARY KEY (id);

-- Rows left IN PROGRESS by the original runner had no lease: run them again.
UPDATE {{.Table}}
SET state = 'RETRY', last_attempt_message = 'was in progress when the queue was upgraded; running again'
WHERE state = 'IN PROGRESS';
UPDATE {{.Table}} SET finished_at = last_attempted
WHERE state IN ('DONE', 'FAILED', 'CANCELLED') AND finished_at IS NULL;

ALTER TABLE {{.Table}} ADD CONSTRAINT {{.Obj "state_check"}}
	CHECK (state IN ('READY', 'IN PROGRESS', 'RETRY', 'DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')) NOT VALID;

-- Pending rows in queue order (claim scan). The task_name condition, always
-- true, keeps the per-key lookups of the claim (which name no task name) off
-- this index: after the queue was analysed while empty, the planner would
-- otherwise walk every pending row for each key.
CREATE INDEX IF NOT EXISTS {{.Obj "pending_idx"}} ON {{.Table}} (id)
	WHERE state IN ('READY', 'RETRY') AND task_name IS NOT NULL;
-- Pending rows per key (newest-wins and supersession).
CREATE INDEX IF NOT EXISTS {{.Obj "key_pending_idx"}} ON {{.Table}} (task_key, id)
	WHERE state IN ('READY', 'RETRY');
-- At most one task per key in flight (invariant 1), enforced by the database.
CREATE UNIQUE INDEX IF NOT EXISTS {{.Obj "key_running_idx"}} ON {{.Table}} (task_key)
	WHERE state = 'IN PROGRESS';
-- Finished rows by age (retention).
CREATE INDEX IF NOT EXISTS {{.Obj "finished_idx"}} ON {{.Table}} (finished_at)
	WHERE finished_at IS NOT NULL;
-- Started tasks per key (never back in time: the claim and Retry look for a
-- newer started task of a key). Tasks enter it when first claimed, so adding
-- tasks does not pay for it.
CREATE INDEX IF NOT EXISTS {{.Obj "key_started_idx"}} ON {{.Table}} (task_key, id)
	WHERE attempts > 0 OR last_attempted > created_at;
