package queue

import "time"

// DefaultTaskTimeout bounds one run of a task unless WithTimeout says
// otherwise.
const DefaultTaskTimeout = time.Minute

// taskHandler is what the SyncManager knows about one task name.
type taskHandler struct {
	name        string
	action      TaskAction
	stream      string
	timeout     time.Duration
	retry       RetryPolicy
	maxAttempts int // 0: only the task's own limit applies
	middleware  []Middleware

	batch     BatchAction // instead of action, for a batch handler
	batchMax  int         // tasks per call
	batchWait time.Duration
}

// kind names what h runs, for errors.
func (h *taskHandler) kind() string {
	if h.batch != nil {
		return "batch action"
	}
	return "task action"
}

// TaskOption configures the handling of one task name.
type TaskOption func(*taskHandler)

// InStream places the task name in a stream. Without it, an action that has
// a Stream() string method goes to that stream; otherwise the task name is
// its own stream.
func InStream(stream string) TaskOption {
	return func(h *taskHandler) { h.stream = stream }
}

// WithTimeout bounds one run of the task. When it passes, the task's context
// is cancelled (Task.Context ends with context.DeadlineExceeded). An action
// that returns after its timeout has its own result recorded, with a
// message saying how late it was; until it returns, the run keeps its
// stream slot, its key and its lease, so an action that ignores its context
// is never run twice at once. One still running well past its timeout (as
// long again, at least a second) is reported to the error handler.
func WithTimeout(d time.Duration) TaskOption {
	return func(h *taskHandler) { h.timeout = d }
}

// WithRetryPolicy sets the backoff between attempts. It also applies when a
// task's lease expired (its worker died) and the task is rescued. A policy
// with a Validate() error method is checked at registration.
func WithRetryPolicy(p RetryPolicy) TaskOption {
	return func(h *taskHandler) { h.retry = p }
}

// WithTaskMaxAttempts fails the task after n runs, whatever limit it was
// added with (the lower one wins).
func WithTaskMaxAttempts(n int) TaskOption {
	return func(h *taskHandler) { h.maxAttempts = n }
}

// WithTaskMiddleware wraps this task name's action (inside the middleware
// given to SyncManager.Use).
func WithTaskMiddleware(mw ...Middleware) TaskOption {
	return func(h *taskHandler) { h.middleware = append(h.middleware, mw...) }
}

// streamer is implemented by actions that name their own stream.
type streamer interface{ Stream() string }
