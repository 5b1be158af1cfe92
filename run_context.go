package queue

import (
	"context"
	"errors"
	"sync"
	"time"
)

// runContext is the context of one run of an action, made when the action
// first asks for it (Task.Context): an action that never looks at its
// context costs no context, no second timer and no cancellation wiring.
// Once made, it carries the run's deadline and notes; it ends with
// context.DeadlineExceeded at the deadline and with a cause (ErrLeaseLost,
// the shutdown) when the run is cancelled otherwise.
type runContext struct {
	mu     sync.Mutex
	ctx    context.Context // nil until asked for
	cancel context.CancelCauseFunc
	stop   context.CancelFunc // stops the deadline's timer
	ended  error              // why the run ended, once it has
}

// get returns the context, making it with deadline and notes if need be.
func (c *runContext) get(deadline time.Time, notes *runNotes) context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx == nil {
		base, cancel := context.WithCancelCause(context.Background())
		ctx, stop := context.WithDeadlineCause(base, deadline, errTaskTimeout)
		c.ctx, c.cancel, c.stop = notesContext{ctx, notes}, cancel, stop
		if c.ended != nil {
			c.cancelLocked(c.ended)
		}
	}
	return c.ctx
}

// end cancels the context with cause, now or as soon as it is made, and
// returns the cause in force: the first one given wins.
func (c *runContext) end(cause error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended == nil {
		c.ended = cause
	}
	if c.ctx != nil {
		c.cancelLocked(c.ended)
	}
	return c.ended
}

// cause returns why the run ended, nil while it has not.
func (c *runContext) cause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended
}

func (c *runContext) cancelLocked(cause error) {
	if errors.Is(cause, errTaskTimeout) {
		// The deadline has passed; its own timer ends the context with
		// context.DeadlineExceeded, which actions test for. Wait for it
		// rather than cancel first with a mere context.Canceled.
		<-c.ctx.Done()
	}
	c.cancel(cause)
	c.stop()
}
