package email

import (
	"context"
	"database/sql"
	"errors"

	"github.com/esync/queue"
)

// Enqueue checks p and adds it to the queue as a task named TaskName with
// the given key, returning the task's ID. An invalid payload returns an
// error wrapping ErrInvalidPayload and queues nothing.
func Enqueue(ctx context.Context, tm *queue.TaskManager, key string, p Payload, opts ...queue.AddOption) (int64, error) {
	if tm == nil {
		return 0, errors.New("email: Enqueue needs a TaskManager")
	}
	if err := p.Validate(); err != nil {
		return 0, err
	}
	return tm.Add(ctx, TaskName, key, p, opts...)
}

// EnqueueTx is Enqueue inside the caller's transaction: the task exists if
// and only if tx commits.
func EnqueueTx(ctx context.Context, tm *queue.TaskManager, tx *sql.Tx, key string, p Payload, opts ...queue.AddOption) error {
	if tm == nil {
		return errors.New("email: EnqueueTx needs a TaskManager")
	}
	if err := p.Validate(); err != nil {
		return err
	}
	return tm.AddTaskTx(ctx, tx, TaskName, key, p, opts...)
}
