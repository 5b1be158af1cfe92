package queue

import (
	"fmt"
	"time"
)

// RetainForever, given to WithStateRetention, keeps finished tasks of a
// state for good.
const RetainForever time.Duration = -1

// retentionConfig holds per-state retention; states not in it follow
// WithRetention.
type retentionConfig struct {
	byState map[TaskState]time.Duration
	err     error // the first bad option
}

// WithStateRetention sets how long finished tasks of one final state (DONE,
// FAILED, CANCELLED or SUPERSEDED) are kept, overriding WithRetention for
// that state: keep FAILED tasks for a month to look into them while DONE
// ones go after a day, or RetainForever. d must be positive or
// RetainForever; a bad state or duration makes Start fail.
func WithStateRetention(state TaskState, d time.Duration) ManagerOption {
	return func(c *managerConfig) {
		switch {
		case !state.Terminal():
			c.retain.fail(fmt.Errorf("queue: WithStateRetention: %q is not a final state (DONE, FAILED, CANCELLED, SUPERSEDED)", state))
			return
		case d <= 0 && d != RetainForever:
			c.retain.fail(fmt.Errorf("queue: WithStateRetention(%s): duration must be positive or RetainForever, got %s", state, d))
			return
		}
		if c.retain.byState == nil {
			c.retain.byState = map[TaskState]time.Duration{}
		}
		c.retain.byState[state] = d
	}
}

func (r *retentionConfig) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// retentionFor is how long finished tasks of state are kept; negative means
// forever.
func (c *managerConfig) retentionFor(state TaskState) time.Duration {
	if d, ok := c.retain.byState[state]; ok {
		return d
	}
	if c.retention <= 0 {
		return RetainForever
	}
	return c.retention
}
