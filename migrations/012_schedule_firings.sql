-- One row per firing of a schedule: the schedule's name and the time the
-- firing was due. The process whose insert creates the row runs the firing;
-- the others, finding the row, do not. The newest row of a schedule tells a
-- starting process which firings were missed while none ran.
CREATE TABLE IF NOT EXISTS {{.QObj "schedule_firing"}} (
	schedule_name text NOT NULL,
	fire_at timestamptz NOT NULL,
	claimed_by text NOT NULL,
	claimed_at timestamptz NOT NULL DEFAULT now(),
	catch_up boolean NOT NULL DEFAULT false,
	finished_at timestamptz,
	error text,
	PRIMARY KEY (schedule_name, fire_at)
);
