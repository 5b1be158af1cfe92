// Package queue keeps services in sync through a durable task queue in
// PostgreSQL.
//
// Every task has a name (which action runs it), a key (what object it is
// about) and JSON data. When several pending tasks share a key only the
// newest runs and the older ones end SUPERSEDED; a key never has two tasks in
// flight, and finishing a task never touches a newer task for its key.
package queue

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// TaskState is the stored state of a task.
type TaskState string

// The states a task moves through. The strings are stored in the queue table.
const (
	// TaskReady is a task waiting to run.
	TaskReady TaskState = "READY"
	// TaskInProgress is a task claimed by a worker under a lease.
	TaskInProgress TaskState = "IN PROGRESS"
	// TaskRetry is a task that failed (or lost its lease) and runs again when due.
	TaskRetry TaskState = "RETRY"
	// TaskDone is a task whose action succeeded.
	TaskDone TaskState = "DONE"
	// TaskFailed is a task that failed permanently or used up its attempts.
	TaskFailed TaskState = "FAILED"
	// TaskCancelled is a task that was cancelled, or had no handler.
	TaskCancelled TaskState = "CANCELLED"
	// TaskSuperseded is a task replaced by a newer task for the same key.
	TaskSuperseded TaskState = "SUPERSEDED"
)

// Terminal reports whether s is a final state.
func (s TaskState) Terminal() bool {
	switch s {
	case TaskDone, TaskFailed, TaskCancelled, TaskSuperseded:
		return true
	}
	return false
}

// Valid reports whether s is one of the known states.
func (s TaskState) Valid() bool {
	switch s {
	case TaskReady, TaskInProgress, TaskRetry, TaskDone, TaskFailed, TaskCancelled, TaskSuperseded:
		return true
	}
	return false
}

// TaskResult is what an action reports about one run of a task.
type TaskResult string

// The results an action can return.
const (
	// TaskResultSuccess marks the task DONE.
	TaskResultSuccess TaskResult = "SUCCESS"
	// TaskResultRetryFailure schedules the task again after a backoff.
	TaskResultRetryFailure TaskResult = "RETRY"
	// TaskResultPermanentFailure marks the task FAILED; it is not retried.
	TaskResultPermanentFailure TaskResult = "ERROR"
)

// TaskMessage is a free-form note an action leaves on its task.
type TaskMessage string

// TaskAction runs the tasks of the names it is registered for.
type TaskAction interface {
	Do(task Task) (TaskResult, TaskMessage)
}

// ScheduledAction is code run on a schedule inside its stream.
type ScheduledAction interface {
	Do() error
	Stream() string
}

// Task is one entry of the queue.
type Task struct {
	// ID is the task's number; higher numbers were added later.
	ID int64
	// Key names the object the task is about ("customer:123").
	Key string
	// Name selects the action that runs the task.
	Name string
	// Created is when the task was added.
	Created time.Time
	// CreatedBy says who added the task.
	CreatedBy string
	// State is the task's state when it was read.
	State TaskState
	// Data is the task's JSON object, decoded.
	Data map[string]interface{}
	// RawData is the task's JSON as stored.
	RawData []byte
	// Attempt counts the runs started so far, this one included.
	Attempt int
	// MaxAttempts is how many runs the task may start before it fails.
	MaxAttempts int
	// RunAfter is the earliest time the task may run.
	RunAfter time.Time
	// LastAttempted is when the task was last claimed (or added).
	LastAttempted time.Time
	// Message is the note left by the last run (or by the queue).
	Message string
	// SupersededBy is the ID of the task that ran instead of this one.
	SupersededBy int64
	// FinishedAt is when the task reached a final state.
	FinishedAt time.Time
	// Errors lists the attempts of the task that did not succeed, oldest
	// first: the last 20 of them. Only GetTask reads it; tasks listed or
	// claimed leave it nil.
	Errors []AttemptError

	ctx context.Context // set by WithContext
	run *taskRun        // the SyncManager's run of the task, if any
}

// AttemptError is what one attempt of a task that did not succeed left: a
// retry, a failure, a cancellation, a release, or a lease that expired.
type AttemptError struct {
	// Attempt is the attempt's number (Task.Attempt while it ran).
	Attempt int `json:"attempt"`
	// At is when the attempt ended.
	At time.Time `json:"at"`
	// State is the state the attempt left the task in.
	State TaskState `json:"state"`
	// Message is the attempt's message.
	Message string `json:"message"`
}

// Context returns the task's context: it carries the run's deadline and is
// cancelled when the run times out (context.DeadlineExceeded), when its
// lease is lost or cannot be extended (cause ErrLeaseLost) and at a hard
// stop. It is never nil.
func (t Task) Context() context.Context {
	switch {
	case t.ctx != nil:
		return t.ctx
	case t.run != nil:
		return t.run.context()
	}
	return context.Background()
}

// WithContext returns a copy of t whose Context is ctx.
func (t Task) WithContext(ctx context.Context) Task {
	t.ctx = ctx
	return t
}

// Decode unmarshals the task's JSON data into v.
func (t Task) Decode(v any) error {
	return json.Unmarshal(t.RawData, v)
}

// ExactData decodes the task's JSON object with numbers kept as
// json.Number, so large integers keep every digit, and returns it with its
// JSON text. It reads RawData, or Data when a caller built the task without
// RawData; a task without data gives an empty object.
func (t Task) ExactData() (map[string]any, []byte, error) {
	raw := bytes.TrimSpace(t.RawData)
	if len(raw) == 0 {
		if t.Data == nil {
			return map[string]any{}, []byte("{}"), nil
		}
		b, err := json.Marshal(t.Data)
		if err != nil {
			return nil, nil, fmt.Errorf("task data cannot be encoded as JSON: %w", err)
		}
		raw = b
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var data map[string]any
	if err := dec.Decode(&data); err != nil {
		return nil, nil, fmt.Errorf("task data is not a JSON object: %w", err)
	}
	if dec.More() {
		return nil, nil, errors.New("task data has text after its JSON object")
	}
	if data == nil {
		return map[string]any{}, []byte("{}"), nil
	}
	return data, raw, nil
}

// Errors callers can test for with errors.Is.
var (
	// ErrNoTasks is returned when there are no tasks to work on.
	ErrNoTasks = errors.New("queue: no tasks available")
	// ErrTaskNotFound is returned when no task has the given ID.
	ErrTaskNotFound = errors.New("queue: task not found")
	// ErrLeaseLost is returned when a lease expired or was taken over, so the
	// holder may no longer finish or extend the task.
	ErrLeaseLost = errors.New("queue: lease lost")
	// ErrInvalidTask is returned for a task that cannot be added: an empty or
	// too long name or key, or data that is not a JSON object.
	ErrInvalidTask = errors.New("queue: invalid task")
	// ErrInvalidIdentifier is returned for a schema or table name that is not
	// a plain SQL identifier.
	ErrInvalidIdentifier = errors.New("queue: invalid identifier")
	// ErrNotRetryable is returned when a task cannot be retried: it is not
	// FAILED or CANCELLED, or a newer task for its key has already started.
	ErrNotRetryable = errors.New("queue: task cannot be retried")
	// ErrCancelRequested is the cause of a running task's context when an
	// operator cancelled the task (CancelTask while it runs).
	ErrCancelRequested = errors.New("queue: task cancelled by request")
	// ErrNotCancellable is returned when a task has already finished.
	ErrNotCancellable = errors.New("queue: task cannot be cancelled")
)

// Driver is the seam between esync and the database that holds the queue.
// PostgresDriver is the implementation; every statement of the queue lives
// behind it. Methods that write take a context and either apply fully or
// not at all.
type Driver interface {
	// AddTasks inserts tasks, inside tx when tx is not nil, and returns their
	// IDs in input order. All are added or none.
	AddTasks(ctx context.Context, tx *sql.Tx, tasks []NewTask) ([]int64, error)
	// Claim moves up to p.Limit due tasks to IN PROGRESS under fresh leases:
	// at most one per key, the newest pending task of each key, with the
	// older pending tasks of that key SUPERSEDED.
	Claim(ctx context.Context, p ClaimParams) ([]ClaimedTask, error)
	// Finish records the outcome of claimed tasks. A completion whose lease
	// is no longer held changes nothing; its task ID is returned in lost. A
	// completion already recorded under its lease (a Finish sent again
	// after its reply was lost) is not lost.
	Finish(ctx context.Context, completions []Completion) (lost []int64, err error)
	// ExtendLeases pushes the expiry of held leases to now plus d. Leases no
	// longer held are returned in lost.
	ExtendLeases(ctx context.Context, leases []Lease, d time.Duration) (lost []int64, err error)
	// RescueExpired returns tasks whose lease expired to RETRY (or FAILED
	// when their attempts are used up) and reports how many it moved.
	RescueExpired(ctx context.Context, p RescueParams) (int, error)
	// DeleteFinished removes up to limit tasks that reached a final state
	// before the given time.
	DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error)
	// GetTask reads one task; ErrTaskNotFound if there is none.
	GetTask(ctx context.Context, id int64) (Task, error)
	// ListTasks reads tasks matching f, oldest first (newest first with f.NewestFirst).
	ListTasks(ctx context.Context, f TaskFilter) ([]Task, error)
	// CountTasks counts tasks matching f.
	CountTasks(ctx context.Context, f TaskFilter) (int, error)
	// CountByState counts the tasks with name (any name if empty) per state.
	CountByState(ctx context.Context, name string) (map[TaskState]int, error)
	// CancelTask cancels one pending task, or requests the cancellation of
	// a running one.
	CancelTask(ctx context.Context, id int64, message string) error
	// CancelKey cancels every pending task of a key and reports how many.
	CancelKey(ctx context.Context, key, message string) (int, error)
	// RetryTask makes a FAILED or CANCELLED task READY again, unless a newer
	// task for its key has started since.
	RetryTask(ctx context.Context, id int64) error
	// Close releases the driver's resources.
	Close() error
}

// NewTask is a task to be added, with its data already encoded as JSON.
type NewTask struct {
	Name        string
	Key         string
	Data        []byte
	CreatedBy   string
	Delay       time.Duration // the task is due this long after it is added
	MaxAttempts int           // 0 means DefaultMaxAttempts
}

// ClaimParams says which tasks a claim may take.
type ClaimParams struct {
	Stream string        // the stream claiming: nothing is claimed while it is paused ("" for none)
	Names  []string      // task names the caller can run
	Limit  int           // most tasks to claim
	Lease  time.Duration // how long the claim holds before it can be rescued
	// Exclusive is the lease of an Exclusive stream (nil for none): the
	// claim takes nothing unless the lease still holds when it runs, and
	// returns ErrExclusiveLost once another process has taken it over.
	Exclusive *ExclusiveLock
}

// Lease is one claim on a task. Only its holder can finish or extend it.
// The token is fresh for every claim call (the tasks of one call share it),
// so TaskID and Token together name the lease.
type Lease struct {
	TaskID  int64
	Token   string
	Expires time.Time
}

// ClaimedTask is a task together with the lease its claim holds.
type ClaimedTask struct {
	Task
	Lease Lease
}

// RescueParams says how RescueExpired returns expired tasks to the queue.
type RescueParams struct {
	Limit int // most tasks to rescue; 0 means 1000
	// Backoff gives the wait before a rescued task of the given name runs
	// again after the given attempt (nil: due at once).
	Backoff func(name string, attempt int) time.Duration
	// RestartGrace: while the database server has been up for less than
	// this, nothing is rescued, so that holders can renew the leases that
	// expired while it was down.
	RestartGrace time.Duration
}

// Completion is the outcome of one claimed task.
type Completion struct {
	Lease   Lease
	State   TaskState     // DONE, RETRY, FAILED, CANCELLED, or READY to release it unrun
	Message string        // stored as the task's last attempt message
	Delay   time.Duration // for RETRY: how long until the task is due again
}

// TaskFilter selects tasks for ListTasks and CountTasks. Empty fields match
// everything.
type TaskFilter struct {
	Name    string
	Key     string
	States  []TaskState
	Limit   int   // ListTasks only; 0 means 1000
	AfterID int64 // ListTasks only: start after this ID (paging)
	// NewestFirst (ListTasks only) lists the newest tasks first; BeforeID
	// then pages (only tasks with smaller IDs; 0 means from the newest) and
	// AfterID is ignored.
	NewestFirst bool
	BeforeID    int64
}
