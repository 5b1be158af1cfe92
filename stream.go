package queue

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// stream is a lane of execution. Its slots bound how many task runs and
// scheduled runs it has at once; tasks and scheduled actions queue for the
// same slots, so a scheduled action in a stream waits for, and blocks, that
// stream's tasks.
type stream struct {
	name        string
	concurrency int
	exclusive   bool
	names       []string // task names that run in this stream

	slots      chan struct{}     // a send takes a slot, a receive frees one
	wake       chan struct{}     // nudges an idle loop
	handoff    chan *ClaimedTask // to an idle worker (see startTask)
	retire     chan struct{}     // ends an idle worker
	running    atomic.Int64
	emptyAtGen atomic.Int64 // finishGen before the last claim that found nothing; -1 after one that found work
	lock       atomic.Pointer[ExclusiveLock]
	lockSeen   atomic.Int64 // unix nanos of the last successful lock check
}

// StreamOption configures a stream.
type StreamOption func(*stream)

// WithConcurrency lets a stream run up to n things at once (default 1).
func WithConcurrency(n int) StreamOption {
	return func(s *stream) { s.concurrency = n }
}

// Exclusive makes a stream run in one process of the cluster at a time: the
// process that holds the stream's advisory lock. The others stand by and
// take over when it goes away.
func Exclusive() StreamOption {
	return func(s *stream) { s.exclusive = true }
}

// maxClaimers bounds the claim loops of one stream. Two keep the database
// busy while one loop's claimed tasks are started; more only contend.
const maxClaimers = 2

// claimers is how many claim loops the stream runs: two when it can run two
// full batches at once, else one. An exclusive stream, or one without task
// names, runs one.
func (s *stream) claimers(batch int) int {
	if s.exclusive || len(s.names) == 0 {
		return 1
	}
	return min(max(s.concurrency/batch, 1), maxClaimers)
}

func (s *stream) start() {
	s.slots = make(chan struct{}, s.concurrency)
	s.wake = make(chan struct{}, 1)
	s.handoff = make(chan *ClaimedTask)
	s.retire = make(chan struct{})
	s.emptyAtGen.Store(-1)
}

// nudge wakes the stream's loop if it waits for work.
func (s *stream) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// takeSlot waits for a free slot; false if the manager stops claiming first.
func (s *stream) takeSlot(stop <-chan struct{}) bool {
	select {
	case s.slots <- struct{}{}:
		return true
	case <-stop:
		return false
	}
}

func (s *stream) freeSlot() { <-s.slots }

// runStream claims and starts tasks for one stream until the manager stops
// claiming. A stream may run more than one (see claimers).
func (m *SyncManager) runStream(s *stream) {
	defer m.streamLoops.Done()
	if len(s.names) == 0 {
		// Only scheduled actions run here; they take slots themselves. An
		// exclusive stream still keeps (or stands by for) its lock.
		for s.exclusive {
			m.holdExclusive(s)
			if !m.wait(s) {
				return
			}
		}
		return
	}
	for {
		if s.exclusive && !m.holdExclusive(s) {
			if !m.wait(s) {
				return
			}
			continue
		}
		if !s.takeSlot(m.stopClaiming) {
			return
		}
		n := 1
	more:
		for n < m.cfg.batchSize {
			select {
			case s.slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		gen := m.finishGen.Load()
		granted := m.takeBudget(n)
		var tasks []ClaimedTask
		var err error
		if granted > 0 {
			tasks, err = m.driver.Claim(m.runCtx, ClaimParams{Names: s.names, Limit: granted, Lease: m.cfg.lease})
			m.returnBudget(granted - len(tasks))
		}
		for i := len(tasks); i < n; i++ {
			s.freeSlot()
		}
		if err != nil {
			m.report(fmt.Errorf("stream %q: %w", s.name, err))
		}
		for i := range tasks {
			s.running.Add(1)
			m.actions.Add(1)
			m.startTask(s, &tasks[i])
		}
		if len(tasks) > 0 {
			s.emptyAtGen.Store(-1)
			continue
		}
		if err == nil && s.running.Load() == 0 {
			s.emptyAtGen.Store(gen)
		}
		if !m.wait(s) {
			return
		}
	}
}

// takeBudget grants up to n claims from the manager's budget (RunOnce sets
// one); an unlimited budget grants n.
func (m *SyncManager) takeBudget(n int) int {
	for {
		b := m.budget.Load()
		if b == unlimited {
			return n
		}
		g := min(int64(n), b)
		if m.budget.CompareAndSwap(b, b-g) {
			return int(g)
		}
	}
}

// returnBudget gives back claims granted but not used.
func (m *SyncManager) returnBudget(k int) {
	if k > 0 && m.budget.Load() != unlimited {
		m.budget.Add(int64(k))
	}
}

// wait blocks until the stream is nudged or the poll interval passes; false
// when the manager stops claiming. A stream that was not nudged for a poll
// interval retires its idle workers.
func (m *SyncManager) wait(s *stream) bool {
	t := time.NewTimer(m.cfg.pollInterval)
	defer t.Stop()
	select {
	case <-s.wake:
		return true
	case <-t.C:
		s.retireIdleWorkers()
		return true
	case <-m.stopClaiming:
		return false
	}
}

// holdExclusive reports whether this process holds the stream's cluster-wide
// lock, trying to take it when it does not.
func (m *SyncManager) holdExclusive(s *stream) bool {
	locker, ok := m.driver.(exclusiveLocker)
	if !ok {
		return true
	}
	ctx, cancel := context.WithTimeout(m.runCtx, 10*time.Second)
	defer cancel()
	if l := s.lock.Load(); l != nil {
		if time.Since(time.Unix(0, s.lockSeen.Load())) < m.cfg.pollInterval {
			return true
		}
		if err := l.Check(ctx); err == nil {
			s.lockSeen.Store(time.Now().UnixNano())
			return true
		}
		m.report(fmt.Errorf("stream %q: exclusive lock connection lost; standing by", s.name))
		l.Release(ctx)
		s.lock.Store(nil)
	}
	l, err := locker.TryExclusive(ctx, s.name)
	if err != nil {
		m.report(fmt.Errorf("stream %q: %w", s.name, err))
		return false
	}
	if l == nil {
		return false
	}
	s.lock.Store(l)
	s.lockSeen.Store(time.Now().UnixNano())
	return true
}

// releaseExclusive gives up the stream's lock at shutdown.
func (s *stream) releaseExclusive() error {
	l := s.lock.Swap(nil)
	if l == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Release(ctx); err != nil {
		return fmt.Errorf("stream %q: release exclusive lock: %w", s.name, err)
	}
	return nil
}

// exclusiveLocker is the driver capability behind exclusive streams.
type exclusiveLocker interface {
	TryExclusive(ctx context.Context, name string) (*ExclusiveLock, error)
}
