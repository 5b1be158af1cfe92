package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// stream is a lane of execution. Its slots bound how many task runs and
// scheduled runs it has at once; tasks and scheduled actions queue for the
// same slots, so a scheduled action in a stream waits for, and blocks, that
// stream's tasks. A stream is the service that claims its tasks: it runs
// one or two claim loops, and each claimed task is the claimed step of a
// run (see taskRun).
type stream struct {
	m           *SyncManager
	name        string
	concurrency int
	exclusive   bool
	names       []string // task names that run in this stream
	// rateLimit runs per ratePer across the cluster (0: no limit).
	rateLimit        int
	ratePer          time.Duration
	window           rateWindow // this process's permits in the current window (stream_rate.go)
	holdOnRetryAfter bool       // a run asking for a Retry-After holds the stream cluster-wide
	// batchMax is 0 in a stream of task actions; in one of batch actions
	// it is their largest batch, and a slot runs a batch (batch_run.go).
	batchMax int

	slots      chan struct{} // a send takes a slot, a receive frees one
	wake       chan struct{} // nudges an idle loop
	handoff    chan *taskRun // to an idle worker (see startRun)
	retire     chan struct{} // ends an idle worker
	quit       chan struct{} // closed when the stream stops claiming
	running    atomic.Int64
	emptyAtGen atomic.Int64 // finishGen before the last claim that found nothing; -1 after one that found work
	lock       atomic.Pointer[ExclusiveLock]
	faults     *faultReport

	cancel   context.CancelCauseFunc
	claimers sync.WaitGroup
	started  bool
}

// StreamOption configures a stream.
type StreamOption func(*stream)

// WithConcurrency lets a stream run up to n things at once (default 1).
func WithConcurrency(n int) StreamOption {
	return func(s *stream) { s.concurrency = n }
}

// Exclusive makes a stream run in one process of the cluster at a time: the
// process that holds the stream's lease (a row beside the queue, renewed
// while held; see WithExclusiveLease). The others stand by and take over
// when it is released or runs out.
func Exclusive() StreamOption {
	return func(s *stream) { s.exclusive = true }
}

// WithRateLimit lets a stream start at most n runs per period across every
// process sharing the queue (a CRM's request quota, say): windows of the
// period, aligned to its multiples, each allow n runs. Tasks claimed beyond
// the window's permits go back to the queue unrun and the stream waits for
// the next window.
func WithRateLimit(n int, per time.Duration) StreamOption {
	return func(s *stream) { s.rateLimit, s.ratePer = n, per }
}

// PauseOnRetryAfter makes a run that asks for a wait (queue.RetryAfter, as
// the built-in email and webhook actions do on a 429 with Retry-After) hold
// its whole stream on every process until then, not only its own task.
func PauseOnRetryAfter() StreamOption {
	return func(s *stream) { s.holdOnRetryAfter = true }
}

// maxClaimers bounds the claim loops of one stream. Two keep the database
// busy while one loop's claimed tasks are started; more only contend.
const maxClaimers = 2

// claimTimeout bounds one claim (or exclusive lock check) of a stream.
const claimTimeout = 10 * time.Second

// claimLoops is how many claim loops the stream runs: two when it can run
// two full batches at once, else one. An exclusive stream, one without
// task names or one of batch actions (whose loop may wait to fill its
// batches) runs one.
func (s *stream) claimLoops(batch int) int {
	if s.exclusive || len(s.names) == 0 || s.batchMax > 0 {
		return 1
	}
	return min(max(s.concurrency/batch, 1), maxClaimers)
}

// prepare makes the stream's channels; Start calls it before any service
// starts, since scheduled runs use the slots too.
func (s *stream) prepare() {
	s.slots = make(chan struct{}, s.concurrency)
	s.wake = make(chan struct{}, 1)
	s.handoff = make(chan *taskRun)
	s.retire = make(chan struct{})
	s.quit = make(chan struct{})
	s.emptyAtGen.Store(-1)
	s.faults = newFaultReport(s.m, fmt.Sprintf("stream %q: claim", s.name), s.m.cfg.pollInterval, max(s.m.cfg.pollInterval, maxClaimBackoff))
}

// maxClaimBackoff caps the wait between claims while the database fails.
const maxClaimBackoff = 2 * time.Second

func (s *stream) start(ctx context.Context) error {
	var loopCtx context.Context
	loopCtx, s.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
	s.started = true
	for range s.claimLoops(s.m.cfg.batchSize) {
		s.claimers.Add(1)
		go func() {
			defer s.claimers.Done()
			s.claimLoop(loopCtx)
		}()
	}
	return nil
}

// stop ends claiming: a claim on its way is cancelled. Runs already claimed
// go on; the manager waits for them separately.
func (s *stream) stop(ctx context.Context) error {
	if !s.started {
		return nil
	}
	close(s.quit)
	s.cancel(errStopped)
	done := make(chan struct{})
	go func() { s.claimers.Wait(); close(done) }()
	if err := waitStopped(ctx, done, fmt.Sprintf("stream %q: claim loop", s.name)); err != nil {
		return err
	}
	return s.releaseExclusive(ctx)
}

// nudge wakes the stream's loop if it waits for work.
func (s *stream) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// takeSlot waits for a free slot; false if the stream stops claiming first.
func (s *stream) takeSlot() bool {
	select {
	case s.slots <- struct{}{}:
		return true
	case <-s.quit:
		return false
	}
}

func (s *stream) freeSlot() { <-s.slots }

// claimLoop claims and starts tasks until the stream stops. While claims
// fail it backs off, reporting the fault once when it starts, now and then
// while it lasts, and logging the recovery.
func (s *stream) claimLoop(ctx context.Context) {
	m := s.m
	if len(s.names) == 0 {
		// Only scheduled actions run here; they take slots themselves. An
		// exclusive stream still keeps (or stands by for) its lock.
		for s.exclusive {
			s.holdExclusive(ctx)
			if !s.wait(ctx, m.cfg.pollInterval) {
				return
			}
		}
		return
	}
	for {
		if s.exclusive && !s.holdExclusive(ctx) {
			if !s.wait(ctx, m.cfg.pollInterval) {
				return
			}
			continue
		}
		if !s.takeSlot() {
			return
		}
		// A rate-limited stream claims no more runs than a window allows:
		// the rest would go back to the queue unrun.
		most := m.cfg.batchSize
		if s.rateLimit > 0 {
			most = min(most, s.rateLimit)
		}
		n := 1
	more:
		for n < most {
			select {
			case s.slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		gen := m.finishGen.Load()
		limit := n
		if s.batchMax > 0 {
			limit = min(n*s.batchMax, max(m.cfg.batchSize, s.batchMax))
		}
		tasks, sent, err := s.claim(ctx, limit)
		var windowEnds time.Time
		if s.batchMax > 0 {
			windowEnds = s.startBatches(ctx, tasks, sent, n, limit)
		} else {
			if s.rateLimit > 0 && len(tasks) > 0 {
				tasks, windowEnds = s.permit(ctx, tasks)
			}
			for i := len(tasks); i < n; i++ {
				s.freeSlot()
			}
			for i := range tasks {
				m.startRun(s.holdRun(&tasks[i], sent))
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return // cut short by the stop
			}
			if errors.Is(err, ErrExclusiveLost) {
				continue // holdExclusive reports it and stands by
			}
			if !s.wait(ctx, s.faults.fail(err)) {
				return
			}
			continue
		}
		s.faults.ok()
		if !windowEnds.IsZero() { // the window's permits are used up
			if !s.sleepUntil(ctx, windowEnds) {
				return
			}
			continue
		}
		if len(tasks) > 0 {
			s.emptyAtGen.Store(-1)
			continue
		}
		if s.running.Load() == 0 {
			s.emptyAtGen.Store(gen)
		}
		if !s.wait(ctx, m.cfg.pollInterval) {
			return
		}
	}
}

// claim claims up to limit due tasks of the stream (fewer when the
// manager's budget says so), returning when the claim was sent.
func (s *stream) claim(ctx context.Context, limit int) ([]ClaimedTask, time.Time, error) {
	m := s.m
	granted := m.takeBudget(limit)
	sent := time.Now()
	if granted == 0 {
		return nil, sent, nil
	}
	callCtx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	// An exclusive stream's claim is fenced by its lease.
	tasks, err := m.driver.Claim(callCtx, ClaimParams{Stream: s.name, Names: s.names, Limit: granted, Lease: m.cfg.lease,
		Exclusive: s.lock.Load()})
	m.returnBudget(granted - len(tasks))
	return tasks, sent, err
}

// holdRun makes the run of a task claimed at sent and holds its lease: the
// run's claimed step.
func (s *stream) holdRun(ct *ClaimedTask, sent time.Time) *taskRun {
	r := s.m.newRun(s, ct)
	s.m.leases.hold(r, sent)
	s.running.Add(1)
	s.m.actions.Add(1)
	return r
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

// wait blocks until the stream is nudged or d passes; false when the stream
// stops. A stream that was not nudged for a poll interval retires its idle
// workers.
func (s *stream) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.wake:
		return true
	case <-t.C:
		s.retireIdleWorkers()
		return true
	case <-ctx.Done():
		return false
	}
}

// sleepUntil blocks until at, deaf to nudges (a claim before then would
// find no permits); false when the stream stops first.
func (s *stream) sleepUntil(ctx context.Context, at time.Time) bool {
	t := time.NewTimer(time.Until(at))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// holdExclusive reports whether this process holds the stream's cluster-wide
// lock, trying to take it when it does not.
func (s *stream) holdExclusive(ctx context.Context) bool {
	locker := s.m.driver.(ExclusiveLocker) // checked at Start
	callCtx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	if l := s.lock.Load(); l != nil {
		if err := l.Check(callCtx); err == nil {
			return true
		}
		s.m.report(fmt.Errorf("stream %q: exclusive lease lost; standing by", s.name))
		l.Release(callCtx)
		s.lock.Store(nil)
	}
	l, err := locker.TryExclusive(callCtx, s.name)
	if err != nil {
		if ctx.Err() == nil {
			s.faults.fail(err)
		}
		return false
	}
	s.faults.ok()
	if l == nil {
		return false
	}
	s.lock.Store(l)
	return true
}

// releaseExclusive gives up the stream's lock at shutdown.
func (s *stream) releaseExclusive(ctx context.Context) error {
	l := s.lock.Swap(nil)
	if l == nil {
		return nil
	}
	if err := l.Release(ctx); err != nil {
		return fmt.Errorf("stream %q: release exclusive lock: %w", s.name, err)
	}
	return nil
}

// hold keeps every process from claiming the stream's tasks until then: a
// run was asked to wait by the far side the stream talks to.
func (s *stream) hold(until time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
	defer cancel()
	if err := s.m.driver.(StreamLimiter).HoldStream(ctx, s.name, until); err != nil {
		s.m.report(fmt.Errorf("stream %q: hold until %s: %w", s.name, until.Format(time.RFC3339), err))
	}
}

// releasedUnrun begins the message of a task handed back unrun (READY); the
// attempt is not kept among the task's errors.
const releasedUnrun = "released unrun"

// handBack returns the tasks of leases to the queue (READY) unrun, why
// saying so in their message, and gives their claims back to the budget.
// If the write fails it is reported; their leases then expire and they are
// rescued.
func (s *stream) handBack(ctx context.Context, leases []Lease, why string) {
	if len(leases) == 0 {
		return
	}
	back := make([]Completion, len(leases))
	for i, l := range leases {
		back[i] = Completion{Lease: l, State: TaskReady, Message: releasedUnrun + ": " + why}
	}
	callCtx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	if _, err := s.m.driver.Finish(callCtx, back); err != nil {
		s.m.report(fmt.Errorf("stream %q: release %d tasks unrun (%s): %w", s.name, len(back), why, err))
	}
	s.m.returnBudget(len(back))
}
