package web

import (
	"context"
	"sync"
	"time"

	"github.com/esync/queue"
)

// finishedMinutes counts finished tasks per minute for the overview's last
// hour. On a busy queue that hour holds hundreds of thousands of finished
// tasks, so the counts of minutes that are over are remembered, and a page
// reads the last two minutes again plus, within a time budget, older
// minutes not counted yet, newest first: the first page of a busy queue
// shows part of the hour and the rest fills in as the page refreshes. A
// minute counts as over a minute after it ended (a finish written by a
// statement that started in it has committed by then). Counts of
// remembered minutes are what the table held then: a task retention
// removes since stays counted.
type finishedMinutes struct {
	mu     sync.Mutex
	known  map[time.Time][]queue.FinishedCount // settled minutes counted, with no rows if none finished
	budget time.Duration                       // for older minutes per page; at least one chunk is read
}

// window is how far back the overview looks; chunk is how many minutes one
// statement counts.
const (
	window      = time.Hour
	chunk       = 5 * time.Minute
	countBudget = 250 * time.Millisecond
)

// finishedHour is the overview's view of the last hour.
type finishedHour struct {
	counts  []queue.FinishedCount
	now     time.Time          // the database's clock
	unknown map[time.Time]bool // minutes of the window not counted yet
}

// lastHour returns the finished counts of the 60 minutes up to the current
// one (by the database's clock), and which of them are not counted yet.
func (f *finishedMinutes) lastHour(ctx context.Context, d *queue.PostgresDriver) (finishedHour, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	start := time.Now()
	if f.known == nil {
		f.known = map[time.Time][]queue.FinishedCount{}
	}
	// The minutes that may still change, read every time. Asking from a
	// minute before this machine's clock says covers a database clock
	// that is a little behind.
	recent, now, err := d.DashboardFinished(ctx, time.Now().Add(-2*time.Minute), time.Time{})
	if err != nil {
		return finishedHour{}, err
	}
	current := now.Truncate(time.Minute)
	settled := current.Add(-time.Minute)
	first := current.Add(-window + time.Minute)
	for m := range f.known {
		if m.Before(first) {
			delete(f.known, m)
		}
	}
	h := finishedHour{now: now, unknown: map[time.Time]bool{}}
	for _, c := range recent {
		if !c.Minute.Before(settled) {
			h.counts = append(h.counts, c)
		}
	}
	// Settled minutes not counted yet, newest first, a chunk at a time.
	budget := f.budget
	if budget == 0 {
		budget = countBudget
	}
	for end, chunks := settled, 0; end.After(first); {
		if _, ok := f.known[end.Add(-time.Minute)]; ok {
			end = end.Add(-time.Minute)
			continue
		}
		if chunks > 0 && time.Since(start) > budget {
			break
		}
		// The chunk runs back from end to the next known minute, at most
		// chunk long.
		from := end.Add(-time.Minute)
		for from.After(first) && end.Sub(from) < chunk {
			if _, ok := f.known[from.Add(-time.Minute)]; ok {
				break
			}
			from = from.Add(-time.Minute)
		}
		counts, _, err := d.DashboardFinished(ctx, from, end)
		if err != nil {
			return finishedHour{}, err
		}
		for m := from; m.Before(end); m = m.Add(time.Minute) {
			f.known[m] = []queue.FinishedCount{}
		}
		for _, c := range counts {
			f.known[c.Minute] = append(f.known[c.Minute], c)
		}
		end, chunks = from, chunks+1
	}
	for m := first; m.Before(settled); m = m.Add(time.Minute) {
		counts, ok := f.known[m]
		if !ok {
			h.unknown[m] = true
		}
		h.counts = append(h.counts, counts...)
	}
	return h, nil
}
