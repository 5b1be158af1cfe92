-- Streams an operator paused: no process claims their tasks or fires
-- their schedules until they are resumed. A row survives restarts.
CREATE TABLE IF NOT EXISTS {{.QObj "paused_streams"}} (
	stream text PRIMARY KEY,
	paused_at timestamptz NOT NULL DEFAULT now(),
	paused_by text NOT NULL DEFAULT ''
);

-- When an operator asked to cancel a task that was running: the process
-- running it cancels its context (told by NOTIFY, or by its next lease
-- extension), and the task ends CANCELLED unless its action succeeds.
ALTER TABLE {{.Table}} ADD COLUMN IF NOT EXISTS cancel_requested_at timestamptz;
