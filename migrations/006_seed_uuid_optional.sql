-- message_queue_id was the original schema's primary key; id took its place
-- in 002. Rows from before keep their uuid; new rows leave it NULL, since
-- gen_random_uuid() for every insert cost about 6 us a row here, a third of
-- what PostgreSQL spends adding a task.
ALTER TABLE {{.Table}} ALTER COLUMN message_queue_id DROP DEFAULT;
ALTER TABLE {{.Table}} ALTER COLUMN message_queue_id DROP NOT NULL;
