package queue

import (
	"context"
	"errors"
	"time"
)

// Process is one SyncManager's entry in the process registry beside the
// queue: every manager registers when it starts, renews its entry while it
// runs and marks it stopped when it shuts down. Entries of processes gone
// for longer than the unhandled grace period are removed.
type Process struct {
	ID            string    // fresh for every start of a manager
	Host          string    // host name
	PID           int       // process id on Host
	Version       string    // esync version the process runs
	Started       time.Time // when it registered
	LastHeartbeat time.Time // when it last renewed its entry
	Expires       time.Time // it counts as live until then, unless stopped
	Stopped       time.Time // when it shut down; zero while it runs (or if it died)
	Live          bool      // it runs: its entry is renewed and it has not stopped
	TaskNames     []string  // the task names it handles
	Streams       []string  // its streams
	Schedules     []string  // its schedules' names
}

// ErrNoRegistry is returned by ListProcesses when the driver keeps no
// process registry.
var ErrNoRegistry = errors.New("queue: the driver keeps no process registry")

// ProcessRegistrar is the driver capability behind the process registry:
// every manager registers and renews its entry, and maintenance cancels
// only the task names no live process of the fleet handles. It is required
// while unhandled tasks are cancelled (the default; WithCancelUnhandled).
type ProcessRegistrar interface {
	Heartbeat(ctx context.Context, p Process, ttl time.Duration) error
	MarkStopped(ctx context.Context, id string) error
	ListProcesses(ctx context.Context) ([]Process, error)
	DeleteDeadProcesses(ctx context.Context, deadFor time.Duration) (int, error)
	CancelUnhandledFleet(ctx context.Context, own []string, grace time.Duration, limit int) (int, error)
}

// ListProcesses returns the registered processes (live ones and those gone
// within the unhandled grace period), live ones first, then newest first.
func (m *TaskManager) ListProcesses(ctx context.Context) ([]Process, error) {
	r, ok := m.driver.(ProcessRegistrar)
	if !ok {
		return nil, ErrNoRegistry
	}
	return r.ListProcesses(ctx)
}
