package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// TaskManager adds tasks to the queue and inspects, cancels and retries
// them. It is safe for concurrent use.
type TaskManager struct {
	driver    Driver
	createdBy string
}

// NewTaskManager returns a TaskManager over driver. Tasks it adds record the
// program's name as their creator unless WithCreatedBy says otherwise.
func NewTaskManager(driver Driver) *TaskManager {
	return &TaskManager{driver: driver, createdBy: truncateRunes(filepath.Base(os.Args[0]), MaxCreatedByLength)}
}

// AddOption adjusts one added task.
type AddOption func(*NewTask)

// WithDelay makes the task due d after it is added.
func WithDelay(d time.Duration) AddOption {
	return func(t *NewTask) { t.Delay = d }
}

// WithRunAfter makes the task due at the given time (now if it has passed).
// The delay is measured on this machine's clock.
func WithRunAfter(at time.Time) AddOption {
	return func(t *NewTask) { t.Delay = max(time.Until(at), 0) }
}

// WithCreatedBy records who added the task.
func WithCreatedBy(who string) AddOption {
	return func(t *NewTask) { t.CreatedBy = who }
}

// WithMaxAttempts caps how many runs the task may start before it fails.
func WithMaxAttempts(n int) AddOption {
	return func(t *NewTask) { t.MaxAttempts = n }
}

// TaskSpec is one task for AddMany.
type TaskSpec struct {
	Name    string
	Key     string
	Data    any
	Options []AddOption
}

// AddTask adds one task (the original call). data must encode to a JSON
// object; nil means {}.
//
// The key decides deduplication, across task names: of the pending tasks of
// one key only the newest runs, whatever their names, and the older ones end
// SUPERSEDED. A "crm.update" keyed "customer:42" supersedes a pending
// "email" task keyed "customer:42". Namespace keys by what they sync
// ("crm:customer:42", "billing:invoice:7"); the built-in helpers do
// (email.Enqueue keys "email:…", CDC tasks "<controller>:<id>").
//
// A task supersedes the pending task of its key as it is added (unless it
// is due later than that one), and takes that task's place in the queue:
// a key updated in a loop while its task runs has one pending task, which
// runs next. A SUPERSEDED task's SupersededBy names the task that replaced
// it; when that one was replaced in turn, its SupersededBy goes on, and the
// chain ends at the task that ran. Added inside a transaction (AddTaskTx),
// the superseded task is held until the transaction ends: the key's work
// waits for it, the rest of the queue does not.
func (m *TaskManager) AddTask(name, key string, data any, opts ...AddOption) error {
	_, err := m.Add(context.Background(), name, key, data, opts...)
	return err
}

// Add adds one task and returns its ID. The key dedups across names, as
// for AddTask.
func (m *TaskManager) Add(ctx context.Context, name, key string, data any, opts ...AddOption) (int64, error) {
	ids, err := m.add(ctx, nil, []TaskSpec{{Name: name, Key: key, Data: data, Options: opts}})
	if err != nil {
		return 0, err
	}
	return ids[0], nil
}

// AddTaskTx adds one task inside the caller's transaction: the task exists if
// and only if tx commits, and idle workers are woken at commit.
func (m *TaskManager) AddTaskTx(ctx context.Context, tx *sql.Tx, name, key string, data any, opts ...AddOption) error {
	if tx == nil {
		return fmt.Errorf("queue: AddTaskTx needs a transaction")
	}
	_, err := m.add(ctx, tx, []TaskSpec{{Name: name, Key: key, Data: data, Options: opts}})
	return err
}

// AddMany adds many tasks in one statement and returns their IDs in the
// order given. Every task is checked first: one bad task adds none.
func (m *TaskManager) AddMany(ctx context.Context, specs []TaskSpec) ([]int64, error) {
	return m.add(ctx, nil, specs)
}

// AddManyTx is AddMany inside the caller's transaction.
func (m *TaskManager) AddManyTx(ctx context.Context, tx *sql.Tx, specs []TaskSpec) ([]int64, error) {
	if tx == nil {
		return nil, fmt.Errorf("queue: AddManyTx needs a transaction")
	}
	return m.add(ctx, tx, specs)
}

func (m *TaskManager) add(ctx context.Context, tx *sql.Tx, specs []TaskSpec) ([]int64, error) {
	tasks := make([]NewTask, len(specs))
	for i, s := range specs {
		data, err := encodeData(s.Data)
		if err != nil {
			return nil, taskError(i, len(specs), s, err)
		}
		t := NewTask{Name: s.Name, Key: s.Key, Data: data, CreatedBy: m.createdBy}
		for _, opt := range s.Options {
			opt(&t)
		}
		if err := t.validate(); err != nil {
			return nil, taskError(i, len(specs), s, err)
		}
		tasks[i] = t
	}
	return m.driver.AddTasks(ctx, tx, tasks)
}

func taskError(i, n int, s TaskSpec, err error) error {
	if n == 1 {
		return fmt.Errorf("add task %.64q: %w", s.Name, err)
	}
	return fmt.Errorf("add tasks: task %d (%.64q): %w", i, s.Name, err)
}

// Get reads one task by ID.
func (m *TaskManager) Get(ctx context.Context, id int64) (Task, error) {
	return m.driver.GetTask(ctx, id)
}

// List reads tasks matching f in the order they were added.
func (m *TaskManager) List(ctx context.Context, f TaskFilter) ([]Task, error) {
	return m.driver.ListTasks(ctx, f)
}

// Count counts tasks matching f.
func (m *TaskManager) Count(ctx context.Context, f TaskFilter) (int, error) {
	return m.driver.CountTasks(ctx, f)
}

// unfinished lists the states of tasks that have not reached a final state.
var unfinished = []TaskState{TaskReady, TaskRetry, TaskInProgress}

// GetTaskCount counts the unfinished (READY, RETRY or IN PROGRESS) tasks
// with the given name, as the original did.
func (m *TaskManager) GetTaskCount(name string) (int, error) {
	return m.driver.CountTasks(context.Background(), TaskFilter{Name: name, States: unfinished})
}

// CountByState counts the tasks with name (all names if empty) in each
// state; states without tasks are absent.
func (m *TaskManager) CountByState(ctx context.Context, name string) (map[TaskState]int, error) {
	return m.driver.CountByState(ctx, name)
}

// Cancel cancels a task. A pending task is CANCELLED at once. For a running
// one the cancellation is requested: the process running it, wherever it
// is, cancels the action's context (cause ErrCancelRequested) and the task
// ends CANCELLED unless the action succeeds anyway. A finished task is not
// changed and ErrNotCancellable is returned.
func (m *TaskManager) Cancel(ctx context.Context, id int64) error {
	return m.driver.CancelTask(ctx, id, "cancelled by request")
}

// ErrNoPause is returned by the stream controls when the driver cannot
// pause streams.
var ErrNoPause = errors.New("queue: this driver cannot pause streams")

// PauseStream pauses stream on every process sharing the queue until
// ResumeStream: running tasks finish, nothing new of the stream starts
// (tasks claimed just before the pause still run), and the pause survives
// restarts. by says who paused it.
func (m *TaskManager) PauseStream(ctx context.Context, stream, by string) error {
	p, ok := m.driver.(StreamPauser)
	if !ok {
		return ErrNoPause
	}
	return p.PauseStream(ctx, stream, by)
}

// ResumeStream resumes a paused stream and reports whether it was paused.
func (m *TaskManager) ResumeStream(ctx context.Context, stream string) (bool, error) {
	p, ok := m.driver.(StreamPauser)
	if !ok {
		return false, ErrNoPause
	}
	return p.ResumeStream(ctx, stream)
}

// PausedStreams lists the paused streams.
func (m *TaskManager) PausedStreams(ctx context.Context) ([]PausedStream, error) {
	p, ok := m.driver.(StreamPauser)
	if !ok {
		return nil, ErrNoPause
	}
	return p.PausedStreams(ctx)
}

// CancelKey cancels every pending task for key and reports how many.
func (m *TaskManager) CancelKey(ctx context.Context, key string) (int, error) {
	return m.driver.CancelKey(ctx, key, "cancelled by request")
}

// Retry makes a FAILED or CANCELLED task READY again with fresh attempts.
// It returns ErrNotRetryable when the task is in another state or a newer
// task for its key has started since.
func (m *TaskManager) Retry(ctx context.Context, id int64) error {
	return m.driver.RetryTask(ctx, id)
}

func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n])
	}
	return s
}
