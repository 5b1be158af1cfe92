-- Indexes for the web dashboard's reads.
--
-- Tasks per key in id order, every state, with the key in byte order: the
-- dashboard's exact key lookup, key prefix search (LIKE 'prefix%' needs
-- the "C" collation to use a b-tree whatever the database's collation is)
-- and the tasks a task superseded (same key, lower id).
CREATE INDEX IF NOT EXISTS {{.Obj "key_idx"}} ON {{.Table}} (task_key COLLATE "C", id);
-- Tasks that did not succeed, newest first: failures are what an operator
-- looks for, and usually a sliver of the table. Tasks that end DONE never
-- enter it.
CREATE INDEX IF NOT EXISTS {{.Obj "failed_idx"}} ON {{.Table}} (id)
	WHERE state IN ('FAILED', 'CANCELLED');
