package queue

import (
	"context"
	"fmt"
	"time"
)

// BatchAction runs several claimed tasks of one name in one call: a CRM's
// bulk endpoint takes 100–200 records at once and counts its quota per
// call, not per record. It returns one result per task, in the order of
// tasks.
//
// Each task keeps its own lease, result, retries, attempts and dedup: a
// batch is only a way to run them. ctx ends at the handler's timeout, at a
// hard stop, and when the lease of any task of the batch is lost or cannot
// be extended (so that no other process runs one of its keys beside this
// call). A task whose cancellation an operator requested has only its own
// Task.Context cancelled; the rest of the batch goes on.
type BatchAction interface {
	DoBatch(ctx context.Context, tasks []Task) []BatchResult
}

// BatchResult is what a batch action reports about one of its tasks.
type BatchResult struct {
	Result  TaskResult
	Message TaskMessage
}

// BatchActionFunc lets an ordinary function serve as a BatchAction.
type BatchActionFunc func(ctx context.Context, tasks []Task) []BatchResult

// DoBatch calls f(ctx, tasks).
func (f BatchActionFunc) DoBatch(ctx context.Context, tasks []Task) []BatchResult {
	return f(ctx, tasks)
}

// MaxBatchSize bounds the tasks a batch action may take in one call.
const MaxBatchSize = 1000

// RegisterBatchHandler makes action run the tasks named name, up to
// maxSize of them per call. The tasks of a claim are grouped by name into
// batches of at most maxSize; WithBatchWait lets a short batch wait a
// little for more tasks before it runs.
//
// In the handler's stream every slot (WithConcurrency) runs one call, and a
// stream's rate limit (WithRateLimit) counts calls: a stream holds either
// batch actions or task actions, not both. The options are those of
// RegisterTaskHandler, applied to each task (timeout to the whole call)
// except WithTaskMiddleware, which wraps single-task actions only; the
// middleware given to Use does not wrap batch actions either.
func (m *SyncManager) RegisterBatchHandler(action BatchAction, name string, maxSize int, opts ...TaskOption) error {
	if action == nil {
		return fmt.Errorf("queue: register %q: nil batch action", name)
	}
	if maxSize < 1 || maxSize > MaxBatchSize {
		return fmt.Errorf("queue: register %q: batch size must be between 1 and %d, got %d", name, MaxBatchSize, maxSize)
	}
	h := &taskHandler{name: name, batch: action, batchMax: maxSize, timeout: DefaultTaskTimeout, retry: DefaultRetryPolicy}
	if s, ok := action.(streamer); ok {
		h.stream = s.Stream()
	}
	return m.register(h, opts)
}

// WithBatchWait lets a batch that a claim left short wait up to d for more
// due tasks of its stream before it runs (default 0: run what the claim
// found). For batch handlers only.
func WithBatchWait(d time.Duration) TaskOption {
	return func(h *taskHandler) { h.batchWait = d }
}

// maxBatchWait bounds WithBatchWait: the claimed tasks' leases are held
// meanwhile.
const maxBatchWait = time.Minute
