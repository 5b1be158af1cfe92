-- Cluster-wide limits of streams: how many runs the current window of a
-- rate-limited stream has used, and until when a stream is held after a
-- far side asked to wait (Retry-After).
CREATE TABLE IF NOT EXISTS {{.QObj "stream_limits"}} (
	stream text PRIMARY KEY,
	window_start timestamptz NOT NULL DEFAULT '-infinity',
	used integer NOT NULL DEFAULT 0,
	last_grant integer NOT NULL DEFAULT 0, -- what the last permit request got
	held_until timestamptz NOT NULL DEFAULT '-infinity'
);
