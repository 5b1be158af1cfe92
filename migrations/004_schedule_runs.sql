-- One row per scheduled action: when its last run started, so that with
-- several processes each scheduled run happens on one of them only.
CREATE TABLE IF NOT EXISTS {{.QObj "schedule"}} (
	name text PRIMARY KEY,
	last_started timestamptz NOT NULL,
	started_by text NOT NULL DEFAULT ''
);
