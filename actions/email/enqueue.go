package email

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/esync/queue"
)

// KeyPrefix starts the key of every task Enqueue and EnqueueTx add.
const KeyPrefix = "email:"

// Key is the task key Enqueue stores for key: key with KeyPrefix in front
// (unless it starts with it already). The queue's newest-wins dedup is scoped
// by key alone, across task names: an email keyed "customer:42" would be
// superseded by any newer pending task keyed "customer:42" (a CRM update,
// say). The prefix keeps email keys apart from everyone else's, so only a
// newer email with the same key replaces a pending one: key emails by what
// should be sent once ("welcome:42", "invoice:2026-11:42").
func Key(key string) string {
	if strings.HasPrefix(key, KeyPrefix) {
		return key
	}
	return KeyPrefix + key
}

// Enqueue checks p and adds it to the queue as a task named TaskName with
// the key Key(key), returning the task's ID. A pending email with the same
// key that has not started is superseded by it. An invalid payload returns
// an error wrapping ErrInvalidPayload and queues nothing.
func Enqueue(ctx context.Context, tm *queue.TaskManager, key string, p Payload, opts ...queue.AddOption) (int64, error) {
	if tm == nil {
		return 0, errors.New("email: Enqueue needs a TaskManager")
	}
	if err := p.Validate(); err != nil {
		return 0, err
	}
	return tm.Add(ctx, TaskName, Key(key), p, opts...)
}

// EnqueueTx is Enqueue inside the caller's transaction: the task exists if
// and only if tx commits. Its key is Key(key) too.
func EnqueueTx(ctx context.Context, tm *queue.TaskManager, tx *sql.Tx, key string, p Payload, opts ...queue.AddOption) error {
	if tm == nil {
		return errors.New("email: EnqueueTx needs a TaskManager")
	}
	if err := p.Validate(); err != nil {
		return err
	}
	return tm.AddTaskTx(ctx, tx, TaskName, Key(key), p, opts...)
}
