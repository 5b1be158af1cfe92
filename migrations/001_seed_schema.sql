-- The original esync schema. On a database that already has these tables
-- (created by hand from the original README) this migration changes nothing.
CREATE SCHEMA IF NOT EXISTS {{.Schema}};

CREATE TABLE IF NOT EXISTS {{.Table}} (
	message_queue_id uuid NOT NULL DEFAULT gen_random_uuid(),
	data jsonb NOT NULL DEFAULT '{}',
	task_key varchar(64) NOT NULL,
	task_name varchar(64) NOT NULL,
	created_at timestamptz DEFAULT now(),
	created_by varchar(64) NOT NULL,
	last_attempted timestamptz NOT NULL DEFAULT now(),
	state varchar(16) NOT NULL,
	last_attempt_message varchar NOT NULL,
	do_after timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT {{.Obj "id_pk"}} PRIMARY KEY (message_queue_id)
);

CREATE TABLE IF NOT EXISTS {{.CDC}} (
	cdc_hash_id uuid NOT NULL DEFAULT gen_random_uuid(),
	cdc_controller_id uuid NOT NULL,
	object_id varchar NOT NULL,
	hash uuid,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT cdc_hash_pk PRIMARY KEY (cdc_hash_id),
	CONSTRAINT cdc_hash_controller_object_uq UNIQUE (cdc_controller_id, object_id)
);
