-- CDC: a pending hash per object (emitted, not yet confirmed downstream) so
-- a change is emitted once, and one row per controller recording how its
-- hashes are computed.
ALTER TABLE {{.CDC}}
	ADD COLUMN IF NOT EXISTS pending_hash uuid,
	ADD COLUMN IF NOT EXISTS pending_at timestamptz;

CREATE TABLE IF NOT EXISTS {{.Schema}}.cdc_controller (
	cdc_controller_id uuid PRIMARY KEY,
	name text NOT NULL,
	hash_version text NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);
