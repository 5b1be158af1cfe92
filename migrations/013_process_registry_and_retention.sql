-- The process registry: one row per start of a SyncManager, renewed by its
-- heartbeat. A process counts as live until expires_at unless it stopped;
-- rows of processes gone for longer than the unhandled grace period are
-- deleted by maintenance.
CREATE TABLE IF NOT EXISTS {{.QObj "process"}} (
	id text PRIMARY KEY,
	host text NOT NULL,
	pid integer NOT NULL,
	version text NOT NULL DEFAULT '',
	started_at timestamptz NOT NULL DEFAULT now(),
	heartbeat_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz NOT NULL,
	stopped_at timestamptz,
	task_names text[] NOT NULL DEFAULT '{}',
	streams text[] NOT NULL DEFAULT '{}',
	schedules text[] NOT NULL DEFAULT '{}'
);

-- Finished rows per state by age: retention deletes the oldest rows of one
-- state in batches with a range scan of this index. It replaces the index
-- on finished_at alone.
CREATE INDEX IF NOT EXISTS {{.Obj "finished_state_idx"}} ON {{.Table}} (state, finished_at)
	WHERE state IN ('DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED');
DROP INDEX IF EXISTS {{.QObj "finished_idx"}};
