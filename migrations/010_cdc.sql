-- CDC: a 64-bit row hash per object (the original uuid hash column is kept
-- as it was), a pending hash (emitted, not yet confirmed downstream) so a
-- change is emitted once, and one row per controller recording how its
-- hashes are computed.
ALTER TABLE {{.CDC}}
	ADD COLUMN IF NOT EXISTS row_hash bigint,
	ADD COLUMN IF NOT EXISTS pending_hash bigint,
	ADD COLUMN IF NOT EXISTS pending_at timestamptz;

-- Rows are found by controller and object; the random uuid key of the
-- original only cost an index and a random number per row.
ALTER TABLE {{.CDC}} DROP CONSTRAINT IF EXISTS cdc_hash_pk;
ALTER TABLE {{.CDC}} ALTER COLUMN cdc_hash_id DROP NOT NULL, ALTER COLUMN cdc_hash_id DROP DEFAULT;

-- Objects synced by the original runner stay synced: their uuid hash is read
-- the way a ReadyHash source's hash column is.
UPDATE {{.CDC}} SET row_hash = hashtextextended(hash::text, 0)
WHERE hash IS NOT NULL AND row_hash IS NULL;

CREATE TABLE IF NOT EXISTS {{.Schema}}.cdc_controller (
	cdc_controller_id uuid PRIMARY KEY,
	name text NOT NULL,
	hash_version text NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);
