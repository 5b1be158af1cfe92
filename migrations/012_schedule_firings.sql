-- One row per firing of a schedule: the schedule's name and the time the
-- firing was due. The process whose insert creates the row runs the firing;
-- the others, finding the row, do not. The newest row of a schedule tells a
-- starting process which firings were missed while none ran; a row without
-- finished_at whose process (process_id, in the process registry) died is
-- handed to another process under the catch-up policy.
CREATE TABLE IF NOT EXISTS {{.QObj "schedule_firing"}} (
	schedule_name text NOT NULL,
	fire_at timestamptz NOT NULL,
	claimed_by text NOT NULL,
	process_id text,
	claimed_at timestamptz NOT NULL DEFAULT now(),
	catch_up boolean NOT NULL DEFAULT false,
	finished_at timestamptz,
	error text,
	rescues integer NOT NULL DEFAULT 0,
	PRIMARY KEY (schedule_name, fire_at)
);
-- Firings whose run has not ended (few): the search for dead processes' runs.
CREATE INDEX IF NOT EXISTS {{.Obj "schedule_firing_open_idx"}} ON {{.QObj "schedule_firing"}} (schedule_name, fire_at)
	WHERE finished_at IS NULL;
