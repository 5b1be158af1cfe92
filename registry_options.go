package queue

import (
	"fmt"
	"time"
)

// DefaultUnhandledGrace is how long after the last process that handled a
// task name went away its due tasks are still left alone, unless
// WithUnhandledGrace says otherwise.
const DefaultUnhandledGrace = 10 * time.Minute

// registryConfig holds the SyncManager's settings for the process registry.
type registryConfig struct {
	heartbeat time.Duration
	grace     time.Duration
	err       error // the first bad option
}

func defaultRegistryConfig() registryConfig {
	return registryConfig{heartbeat: 10 * time.Second, grace: DefaultUnhandledGrace}
}

// WithHeartbeat sets how often the manager renews its entry in the process
// registry (default 10s). An entry not renewed for three intervals counts as
// dead. d must be positive, or Start fails.
func WithHeartbeat(d time.Duration) ManagerOption {
	return func(c *managerConfig) {
		if d <= 0 && c.fleet.err == nil {
			c.fleet.err = fmt.Errorf("queue: WithHeartbeat: interval must be positive, got %s", d)
		}
		c.fleet.heartbeat = d
	}
}

// WithUnhandledGrace sets how long due tasks of a name are left alone after
// the last live process that handled the name went away (default
// DefaultUnhandledGrace), so another service's tasks survive its deploys.
// Zero cancels them as soon as no live process handles their name. A name
// no process ever handled is cancelled at once, as the original did. d must
// not be negative, or Start fails.
func WithUnhandledGrace(d time.Duration) ManagerOption {
	return func(c *managerConfig) {
		if d < 0 && c.fleet.err == nil {
			c.fleet.err = fmt.Errorf("queue: WithUnhandledGrace: must not be negative, got %s", d)
		}
		c.fleet.grace = d
	}
}

// checkOptions returns the first bad option given to NewSyncManager.
func (c *managerConfig) checkOptions() error {
	if c.retain.err != nil {
		return c.retain.err
	}
	return c.fleet.err
}
