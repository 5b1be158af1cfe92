package queue

import (
	"context"
	"sync"
	"time"
)

// runNotes carries what an action asks of the manager beyond its result.
type runNotes struct {
	mu         sync.Mutex
	retryAfter time.Duration
}

// wait is the delay a RetryAfter asked for, 0 if none.
func (n *runNotes) wait() time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.retryAfter
}

type runNotesKey struct{}

// notesContext is a context that RetryAfter can write to: a run's context
// and its notes in one value.
type notesContext struct {
	context.Context
	notes *runNotes
}

// Value returns the notes for their key and asks the run's context for
// every other key.
func (c notesContext) Value(key any) any {
	if key == (runNotesKey{}) {
		return c.notes
	}
	return c.Context.Value(key)
}

// RetryAfter asks that the task, if its action returns
// TaskResultRetryFailure, run again no sooner than d from now instead of
// after the retry policy's backoff. Actions call it when the far side says
// when to come back (an HTTP Retry-After header, say). Outside a run managed
// by a SyncManager it does nothing.
func RetryAfter(task Task, d time.Duration) {
	n, _ := task.Context().Value(runNotesKey{}).(*runNotes)
	if n == nil || d < 0 {
		return
	}
	n.mu.Lock()
	n.retryAfter = d
	n.mu.Unlock()
}

// RequestedRetryDelay returns the delay set by RetryAfter on task's context
// and whether one was set. It lets tests of actions check what they asked.
func RequestedRetryDelay(task Task) (time.Duration, bool) {
	n, _ := task.Context().Value(runNotesKey{}).(*runNotes)
	if n == nil {
		return 0, false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.retryAfter, n.retryAfter > 0
}

// WithRetryNotes returns a copy of task whose context records RetryAfter
// calls, for testing actions outside a SyncManager.
func WithRetryNotes(task Task) Task {
	return task.WithContext(notesContext{task.Context(), &runNotes{}})
}
