package queue

import (
	"strings"
	"sync"
	"time"
)

// claimWalkMargin is how far before the first due task a recent claim found
// the next claim's walk starts. A task is queued at the time its adding
// transaction started and becomes visible when it commits: one that
// commits within the margin is found by the next claim.
const claimWalkMargin = time.Second

// claimFullWalkEvery is how often a claim walks the queue from its start,
// which finds tasks whose adding transaction stayed open for longer than
// claimWalkMargin.
const claimFullWalkEvery = 5 * time.Second

// claimWalks remembers, per set of task names, where the queue's due tasks
// began at the last claim, so that the next claim's walk starts there and
// not at the index entries that claimed tasks leave behind until vacuum
// removes them (which it cannot do while a long transaction holds the xmin
// horizon back).
type claimWalks struct {
	mu    sync.Mutex
	walks map[string]*claimWalk
}

type claimWalk struct {
	from     float64 // epoch seconds, by the database's clock
	fullWalk time.Time
}

// start returns the key of names and where their claim's walk begins (nil:
// from the start of the queue).
func (w *claimWalks) start(names []string) (key string, from any) {
	key = strings.Join(names, "\x00")
	w.mu.Lock()
	defer w.mu.Unlock()
	walk := w.walks[key]
	if walk == nil || time.Since(walk.fullWalk) >= claimFullWalkEvery {
		if w.walks == nil {
			w.walks = map[string]*claimWalk{}
		}
		if walk == nil {
			walk = &claimWalk{}
			w.walks[key] = walk
		}
		walk.fullWalk = time.Now()
		return key, nil
	}
	return key, walk.from - claimWalkMargin.Seconds()
}

// found records where a claim of key found the first due task.
func (w *claimWalks) found(key string, first float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if walk := w.walks[key]; walk != nil {
		walk.from = first
	}
}
