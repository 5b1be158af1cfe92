package queue

import (
	"context"
	"time"
)

// stateRetainer is the driver capability behind per-state retention.
type stateRetainer interface {
	DeleteFinishedState(ctx context.Context, state TaskState, before time.Time, limit int) (int, error)
}

// retentionBatch is how many finished tasks one delete removes.
const retentionBatch = 5000

// finalStates are the states retention deletes from.
var finalStates = []TaskState{TaskDone, TaskFailed, TaskCancelled, TaskSuperseded}

// deleteFinished deletes the tasks past their state's retention, in
// batches, until a batch comes back short or the pass has used its time
// budget (half the maintenance interval), so a backlog of finished tasks is
// worked off over several passes without holding up the rest of
// maintenance. It reports how many it deleted.
func (m *SyncManager) deleteFinished(ctx context.Context) (int, error) {
	budget := time.Now().Add(m.cfg.maintenanceInterval / 2)
	sr, ok := m.driver.(stateRetainer)
	if !ok {
		// A driver without per-state deletes gets WithRetention for all.
		sr = allStates{m.driver}
	}
	deleted := 0
	for _, state := range finalStates {
		keep := m.cfg.retentionFor(state)
		if keep < 0 {
			continue
		}
		before := time.Now().Add(-keep)
		for {
			n, err := sr.DeleteFinishedState(ctx, state, before, retentionBatch)
			deleted += n
			if err != nil {
				return deleted, err
			}
			if n < retentionBatch {
				break
			}
			if time.Now().After(budget) {
				return deleted, nil
			}
		}
		if !ok {
			break
		}
	}
	return deleted, nil
}

// allStates deletes finished tasks of every state through the Driver.
type allStates struct{ d Driver }

func (a allStates) DeleteFinishedState(ctx context.Context, _ TaskState, before time.Time, limit int) (int, error) {
	return a.d.DeleteFinished(ctx, before, limit)
}
