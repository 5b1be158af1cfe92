-- One row per Exclusive stream: which process holds it, until when, and a
-- fence that grows with every change of holder. A lease in a table, not a
-- session advisory lock, so that it holds behind a transaction-pooling
-- PgBouncer (where a session is shared between clients): the holder renews
-- it while it runs, the others take it over once it has expired.
CREATE TABLE IF NOT EXISTS {{.QObj "exclusive"}} (
	name text PRIMARY KEY,
	token text NOT NULL,
	fence bigint NOT NULL,
	held_by text NOT NULL DEFAULT '',
	acquired_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL
);
