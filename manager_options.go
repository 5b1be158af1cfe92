package queue

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// managerConfig holds the SyncManager's settings.
type managerConfig struct {
	logger              *slog.Logger
	pollInterval        time.Duration
	lease               time.Duration
	stopTimeout         time.Duration
	retention           time.Duration
	maintenanceInterval time.Duration
	batchSize           int
	cancelUnhandled     bool
	listen              bool
	sched               scheduleConfig  // schedule_options.go
	retain              retentionConfig // retention_options.go
	fleet               registryConfig  // registry_options.go
}

func defaultManagerConfig() managerConfig {
	return managerConfig{
		logger:              slog.Default(),
		pollInterval:        time.Second,
		lease:               30 * time.Second,
		stopTimeout:         30 * time.Second,
		retention:           24 * time.Hour,
		maintenanceInterval: 5 * time.Second,
		batchSize:           100,
		cancelUnhandled:     true,
		listen:              true,
		fleet:               defaultRegistryConfig(),
	}
}

// validate reports the first setting out of range. Start calls it, so that
// a bad value is a clear error there and never a panic or a busy loop in a
// background service.
func (c *managerConfig) validate() error {
	positive := func(what string, d time.Duration) error {
		if d <= 0 {
			return fmt.Errorf("queue: %s must be positive, got %s", what, d)
		}
		return nil
	}
	if err := c.checkOptions(); err != nil {
		return err
	}
	switch {
	case c.logger == nil:
		return errors.New("queue: WithLogger: nil logger")
	case c.batchSize < 1:
		return fmt.Errorf("queue: WithBatchSize must be at least 1, got %d", c.batchSize)
	case c.stopTimeout < 0:
		return fmt.Errorf("queue: WithStopTimeout must not be negative, got %s", c.stopTimeout)
	case c.lease > 0 && c.lease < 3*time.Millisecond:
		return fmt.Errorf("queue: WithLease must be at least 3ms, got %s", c.lease)
	}
	if err := positive("WithLease", c.lease); err != nil {
		return err
	}
	if err := positive("WithPollInterval", c.pollInterval); err != nil {
		return err
	}
	return positive("WithMaintenanceInterval", c.maintenanceInterval)
}

// ManagerOption configures a SyncManager.
type ManagerOption func(*managerConfig)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) ManagerOption {
	return func(c *managerConfig) { c.logger = l }
}

// WithPollInterval sets how often an idle stream looks for due tasks when no
// notification woke it (default 1s). With notifications off it is the only
// way new tasks are found.
func WithPollInterval(d time.Duration) ManagerOption {
	return func(c *managerConfig) { c.pollInterval = d }
}

// WithLease sets how long a claim holds a task before another process may
// rescue it (default 30s). The manager extends the lease while the action
// runs and until its result is written, so it bounds only how soon a dead
// worker's tasks run again. A run whose lease cannot be extended (the
// database is unreachable) has its context cancelled with a quarter of the
// lease left, before another process could take the task over.
func WithLease(d time.Duration) ManagerOption {
	return func(c *managerConfig) { c.lease = d }
}

// WithStopTimeout bounds how long Stop waits for running actions (default
// 30s).
func WithStopTimeout(d time.Duration) ManagerOption {
	return func(c *managerConfig) { c.stopTimeout = d }
}

// WithRetention sets how long finished tasks are kept (default 24h); zero or
// less keeps them forever. WithStateRetention overrides it per state.
func WithRetention(d time.Duration) ManagerOption {
	return func(c *managerConfig) { c.retention = d }
}

// WithMaintenanceInterval sets how often expired leases are rescued and old
// tasks deleted (default 5s), once across all processes.
func WithMaintenanceInterval(d time.Duration) ManagerOption {
	return func(c *managerConfig) { c.maintenanceInterval = d }
}

// WithBatchSize caps how many tasks one claim takes (default 100); a stream
// never claims more than it has free slots. A stream whose concurrency is at
// least twice the batch size claims with two loops at once.
func WithBatchSize(n int) ManagerOption {
	return func(c *managerConfig) { c.batchSize = n }
}

// WithCancelUnhandled turns off (or on) cancelling due tasks whose name no
// process handles (default on, as the original did). With the process
// registry, a name some live process handles, or one did within
// WithUnhandledGrace, is left alone.
func WithCancelUnhandled(on bool) ManagerOption {
	return func(c *managerConfig) { c.cancelUnhandled = on }
}

// WithListen turns LISTEN/NOTIFY wake-ups off (or on; default on). Off,
// streams find new tasks by polling only, as behind a transaction pooler.
func WithListen(on bool) ManagerOption {
	return func(c *managerConfig) { c.listen = on }
}
