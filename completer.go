package queue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// completer is the written step of runs: it records results in batches.
// While one Finish is on its way, results that arrive meanwhile wait and go
// in the next one; nothing is delayed when the queue is quiet. When the
// database fails, the batch stays pending, results that arrive meanwhile
// join it, and it is tried again (with a capped backoff) for as long as the
// manager runs: the lease keeper keeps extending the leases of results
// waiting to be written, so a success or a permanent failure is never run
// again because its write was late.
type completer struct {
	loop
	m      *SyncManager
	faults *faultReport

	mu       sync.Mutex
	pending  []result
	draining bool // stop was called: write what is pending, then end
	closed   bool // stop has ended: results are no longer taken
	wake     chan struct{}
	waiting  atomic.Int64 // results taken but not yet written
	failure  error        // the last write's error, nil after a success
}

func (c *completer) lastErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failure
}

// result is one finished run and the completion its action produced.
type result struct {
	r *taskRun
	c Completion
}

// completerBatch bounds how many results one Finish writes.
const completerBatch = 1000

// finishTimeout bounds one Finish call.
const finishTimeout = 10 * time.Second

func newCompleter(m *SyncManager) *completer {
	c := &completer{m: m, wake: make(chan struct{}, 1)}
	c.faults = newFaultReport(m, "write results", 20*time.Millisecond, time.Second)
	c.loop = loop{name: "result writer", run: c.run}
	return c
}

// add queues the result of r.
func (c *completer) add(r *taskRun, comp Completion) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		// The manager has stopped: the lease is no longer extended and
		// the task runs again once it expires.
		c.m.leases.drop(r)
		return
	}
	c.pending = append(c.pending, result{r, comp})
	c.waiting.Add(1)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// pendingCount reports how many results wait to be written.
func (c *completer) pendingCount() int64 { return c.waiting.Load() }

// stop writes what is pending and ends. Once ctx ends, the results still
// pending are given up and returned as an error: their leases expire and
// the tasks run again.
func (c *completer) stop(ctx context.Context) error {
	c.mu.Lock()
	c.draining = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	if err := c.loop.wait(ctx); err != nil {
		// Cut short a Finish on its way, without waiting past ctx for a
		// driver that ignores its context.
		c.loop.stop(ctx)
	}
	c.mu.Lock()
	c.closed = true
	left := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, p := range left {
		c.m.leases.drop(p.r)
	}
	c.waiting.Add(-int64(len(left)))
	if len(left) == 0 {
		return nil
	}
	err := fmt.Errorf("queue: %d results not written before the shutdown's deadline (their leases will expire and the tasks run again)", len(left))
	if last := c.lastErr(); last != nil {
		err = fmt.Errorf("%w; the last write failed: %w", err, last)
	}
	return err
}

func (c *completer) run(ctx context.Context) {
	for {
		c.mu.Lock()
		n := min(len(c.pending), completerBatch)
		batch := append([]result(nil), c.pending[:n]...)
		draining := c.draining
		c.mu.Unlock()
		if n == 0 {
			if draining {
				return
			}
			select {
			case <-c.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		if wait, ok := c.write(ctx, batch); !ok {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return
			}
		}
	}
}

// write finishes one batch: the first results pending. It reports false
// and the wait before the next try when the database failed; the batch then
// stays pending, to be tried again with the results that arrive meanwhile.
func (c *completer) write(ctx context.Context, batch []result) (time.Duration, bool) {
	completions := make([]Completion, len(batch))
	for i, p := range batch {
		completions[i] = p.c
	}
	callCtx, cancel := context.WithTimeout(ctx, finishTimeout)
	lost, err := c.m.driver.Finish(callCtx, completions)
	cancel()
	c.mu.Lock()
	c.failure = err
	c.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			return 0, false
		}
		return c.faults.fail(fmt.Errorf("%d results wait to be written, their leases kept: %w", c.pendingCount(), err)), false
	}
	c.faults.ok()
	c.mu.Lock()
	if c.closed { // stop gave the batch up meanwhile
		c.mu.Unlock()
		return 0, true
	}
	c.pending = c.pending[len(batch):]
	c.mu.Unlock()
	gone := make(map[int64]bool, len(lost))
	for _, id := range lost {
		gone[id] = true
	}
	for _, p := range batch {
		if gone[p.c.Lease.TaskID] {
			c.m.report(p.r.taskError(fmt.Errorf("result %s discarded: %w", p.c.State, ErrLeaseLost)))
		}
		c.m.leases.drop(p.r)
	}
	c.m.finishGen.Add(1)
	c.waiting.Add(-int64(len(batch)))
	// A finished task may unblock a pending task of its key, or be due again.
	for _, p := range batch {
		p.r.s.nudge()
	}
	return 0, true
}
