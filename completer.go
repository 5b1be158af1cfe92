package queue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-multierror"
)

// completer writes task results in batches: while one Finish is on its way,
// results that arrive meanwhile queue up and go in the next one. Nothing is
// delayed when the queue is quiet.
type completer struct {
	m       *SyncManager
	in      chan finished
	waiting atomic.Int64 // results added but not yet written
	done    chan struct{}
	once    sync.Once
	giveUp  chan struct{} // closed when close's deadline passes: no more retries

	closing  atomic.Bool // close was called: failures are returned too
	mu       sync.Mutex
	closeErr *multierror.Error
}

type finished struct {
	c Completion
	s *stream
}

const completerBatch = 1000

func newCompleter(m *SyncManager) *completer {
	c := &completer{m: m, in: make(chan finished, 4*completerBatch), done: make(chan struct{}), giveUp: make(chan struct{})}
	go c.run()
	return c
}

// add queues one result.
func (c *completer) add(c2 Completion, s *stream) {
	c.waiting.Add(1)
	c.in <- finished{c2, s}
}

// pending reports how many results wait to be written.
func (c *completer) pending() int64 { return c.waiting.Load() }

// close writes what is queued and stops. Call it after every add. Once ctx
// ends, each batch left gets one attempt and no retries. It returns the
// writes that failed after it was called (they were reported too).
func (c *completer) close(ctx context.Context) error {
	c.closing.Store(true)
	c.once.Do(func() { close(c.in) })
	select {
	case <-c.done:
	case <-ctx.Done():
		close(c.giveUp)
		<-c.done
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeErr.ErrorOrNil()
}

func (c *completer) run() {
	defer close(c.done)
	batch := make([]finished, 0, completerBatch)
	for f := range c.in {
		batch = append(batch[:0], f)
	fill:
		for len(batch) < completerBatch {
			select {
			case f, ok := <-c.in:
				if !ok {
					break fill
				}
				batch = append(batch, f)
			default:
				break fill
			}
		}
		c.write(batch)
	}
}

// write finishes a batch, trying again for a while if the database is
// unreachable (not after a shutdown's deadline). If it stays unreachable the
// leases expire and the tasks run again: nothing is lost.
func (c *completer) write(batch []finished) {
	completions := make([]Completion, len(batch))
	for i, f := range batch {
		completions[i] = f.c
	}
	var err error
	for attempt, wait := 0, 50*time.Millisecond; attempt < 8; attempt, wait = attempt+1, wait*2 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var lost []int64
		lost, err = c.m.driver.Finish(ctx, completions)
		cancel()
		if err == nil {
			for _, id := range lost {
				c.m.report(fmt.Errorf("task %d: result discarded: %w", id, ErrLeaseLost))
			}
			break
		}
		select {
		case <-time.After(wait):
			continue
		case <-c.giveUp:
		}
		break
	}
	if err != nil {
		err = fmt.Errorf("finish %d tasks: %w (their leases will expire and they will run again)", len(batch), err)
		c.m.report(err)
		if c.closing.Load() {
			c.mu.Lock()
			c.closeErr = multierror.Append(c.closeErr, err)
			c.mu.Unlock()
		}
	}
	c.m.finishGen.Add(1)
	c.waiting.Add(-int64(len(batch)))
	// A finished task may unblock a pending task of its key, or be due again.
	for _, f := range batch {
		f.s.nudge()
	}
}
