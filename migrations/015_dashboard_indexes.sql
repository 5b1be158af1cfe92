-- Indexes for the web dashboard's reads.
--
-- Finished tasks that never started (superseded or cancelled while
-- pending), per key in id order. With key_pending_idx, key_running_idx and
-- key_started_idx it holds every task of a key, so the dashboard finds a
-- key's tasks, and the tasks a task superseded, through indexes. Tasks that
-- run never enter it: it costs the claim and finish nothing.
CREATE INDEX IF NOT EXISTS {{.Obj "key_unstarted_idx"}} ON {{.Table}} (task_key, id)
	WHERE state IN ('DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')
		AND NOT coalesce(attempts > 0 OR last_attempted > created_at, false);
-- Tasks that did not succeed, newest first: failures are what an operator
-- looks for, and usually a sliver of the table. Tasks that end DONE never
-- enter it.
CREATE INDEX IF NOT EXISTS {{.Obj "failed_idx"}} ON {{.Table}} (id)
	WHERE state IN ('FAILED', 'CANCELLED');
