-- The outcomes of a task's attempts that did not succeed: a JSON array of
-- {"attempt": n, "at": time, "state": state, "message": text}, oldest
-- first, the last 20 kept. The finish statement appends one for every
-- outcome but DONE, the rescue one for every expired lease (see
-- driver_postgres_queries.go). NULL until the first such outcome: adding the
-- column rewrites no row, and a task that succeeds at once never has one.
ALTER TABLE {{.Table}} ADD COLUMN IF NOT EXISTS errors jsonb;
