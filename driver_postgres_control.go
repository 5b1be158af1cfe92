package queue

import (
	"context"
	"fmt"
	"time"
)

// This file holds the operator's controls of a running fleet: pausing and
// resuming streams cluster-wide. Cancelling a running task is CancelTask.

// PausedStream is a stream an operator paused.
type PausedStream struct {
	Stream   string
	PausedAt time.Time
	PausedBy string
}

// PauseStream pauses stream on every process sharing the queue, until
// ResumeStream: tasks already running finish, no new task of the stream is
// claimed and none of its schedules fires. It survives restarts. Pausing a
// paused stream changes nothing.
func (d *PostgresDriver) PauseStream(ctx context.Context, stream, by string) error {
	if err := checkText("stream", stream, MaxNameLength, true); err != nil {
		return fmt.Errorf("queue: pause stream: %w", err)
	}
	var n int
	if err := d.db.QueryRowContext(ctx, d.q.pauseStream, stream, by, d.controlChannel).Scan(&n); err != nil {
		return fmt.Errorf("queue: pause stream %q: %w", stream, err)
	}
	return nil
}

// ResumeStream resumes a paused stream and reports whether it was paused.
// Idle processes are woken at once.
func (d *PostgresDriver) ResumeStream(ctx context.Context, stream string) (bool, error) {
	var n int
	if err := d.db.QueryRowContext(ctx, d.q.resumeStream, stream, d.controlChannel).Scan(&n); err != nil {
		return false, fmt.Errorf("queue: resume stream %q: %w", stream, err)
	}
	return n == 1, nil
}

// PausedStreams lists the paused streams.
func (d *PostgresDriver) PausedStreams(ctx context.Context) ([]PausedStream, error) {
	rows, err := d.db.QueryContext(ctx, d.q.pausedStreams)
	if err != nil {
		return nil, fmt.Errorf("queue: paused streams: %w", err)
	}
	defer rows.Close()
	var out []PausedStream
	for rows.Next() {
		var p PausedStream
		var at float64
		if err := rows.Scan(&p.Stream, &at, &p.PausedBy); err != nil {
			return nil, fmt.Errorf("queue: paused streams: %w", err)
		}
		p.PausedAt = epochTime(at)
		out = append(out, p)
	}
	return out, rows.Err()
}

// StreamPaused reports whether stream is paused.
func (d *PostgresDriver) StreamPaused(ctx context.Context, stream string) (bool, error) {
	var paused bool
	err := d.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM `+d.names.QObj("paused_streams")+` WHERE stream = $1)`, stream).Scan(&paused)
	if err != nil {
		return false, fmt.Errorf("queue: stream %q paused: %w", stream, err)
	}
	return paused, nil
}
