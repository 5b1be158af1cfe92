package queue

import (
	"context"
	"sync"
	"time"
)

// A stream's cluster-wide rate limit (WithRateLimit): runs, or calls of a
// batch action, are started only with a permit of the current window,
// taken from the driver after the claim. Tasks claimed beyond the permits
// go back to the queue unrun, so the stream claims no more than a window
// allows, and once this process alone has used a window's permits it
// waits for the next window instead of claiming again only to hand the
// tasks back.

// rateWindow counts the permits this process took in the current window.
type rateWindow struct {
	mu   sync.Mutex
	ends time.Time
	used int
}

// took records granted permits of the window ending at ends, and reports
// whether this process has used all limit permits of it.
func (w *rateWindow) took(granted int, ends time.Time, limit int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !ends.Equal(w.ends) {
		w.ends, w.used = ends, 0
	}
	w.used += granted
	return w.used >= limit
}

// takePermits takes up to want run permits from the stream's rate limit.
// When the window cannot grant more (fewer were granted than wanted, or
// this process has used them all) it also returns when the window ends,
// for the stream to wait that long.
func (s *stream) takePermits(ctx context.Context, want int) (int, time.Time) {
	callCtx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	granted, ends, err := s.m.driver.(StreamLimiter).TakeRunPermits(callCtx, s.name, want, s.rateLimit, s.ratePer)
	if err != nil {
		s.faults.fail(err)
		return 0, time.Now().Add(s.m.cfg.pollInterval)
	}
	if s.window.took(granted, ends, s.rateLimit) || granted < want {
		return granted, ends
	}
	return granted, time.Time{}
}

// permit takes run permits for claimed tasks. Tasks beyond the permits
// granted go back to the queue unrun.
func (s *stream) permit(ctx context.Context, tasks []ClaimedTask) ([]ClaimedTask, time.Time) {
	granted, ends := s.takePermits(ctx, len(tasks))
	if granted >= len(tasks) {
		return tasks, ends
	}
	leases := make([]Lease, 0, len(tasks)-granted)
	for _, t := range tasks[granted:] {
		leases = append(leases, t.Lease)
	}
	s.handBack(ctx, leases, "the stream's rate limit was reached")
	return tasks[:granted], ends
}
