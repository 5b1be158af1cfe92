package web

import (
	"context"
	"sync"
	"time"

	"github.com/esync/queue"
)

// finishedMinutes remembers the counts of finished tasks per minute for the
// minutes that are over, so that a page asks the database only for the
// last two minutes instead of the whole hour: on a busy queue that hour
// holds hundreds of thousands of finished tasks. A minute counts as over a
// minute after it ended (a finish written by a statement that started in it
// has committed by then). Counts of remembered minutes are what the table
// held then: a task retention removes since stays counted.
type finishedMinutes struct {
	mu     sync.Mutex
	minute map[time.Time][]queue.FinishedCount
	upTo   time.Time // minutes before this are in minute
}

// window is how far back the overview looks.
const window = time.Hour

// lastHour returns the finished counts of the 60 minutes up to the current
// one (by the database's clock), and that clock.
func (f *finishedMinutes) lastHour(ctx context.Context, d *queue.PostgresDriver) ([]queue.FinishedCount, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	since := f.upTo
	if floor := time.Now().Add(-window); since.Before(floor) {
		since = floor
	}
	fresh, now, err := d.DashboardFinished(ctx, since)
	if err != nil {
		return nil, time.Time{}, err
	}
	current := now.Truncate(time.Minute)
	settled := current.Add(-time.Minute)
	first := current.Add(-window + time.Minute)
	if f.minute == nil {
		f.minute = map[time.Time][]queue.FinishedCount{}
	}
	for m := range f.minute {
		if m.Before(first) || !m.Before(since.Truncate(time.Minute)) {
			delete(f.minute, m) // too old, or asked for again
		}
	}
	var out []queue.FinishedCount
	for _, c := range fresh {
		if c.Minute.Before(first) {
			continue
		}
		if c.Minute.Before(settled) {
			f.minute[c.Minute] = append(f.minute[c.Minute], c)
		} else {
			out = append(out, c)
		}
	}
	for _, counts := range f.minute {
		out = append(out, counts...)
	}
	f.upTo = settled
	return out, now, nil
}
