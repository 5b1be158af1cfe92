package queue_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/esync/queue"
)

// A process extends the leases of tasks whose results it is writing: a
// Finish and an ExtendLeases of the same tasks, listed in opposite orders,
// run side by side without deadlocking.
func TestFinishBesideExtendDoesNotDeadlock(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for round := range 15 {
		addMany(t, b, 300, func(i int) queue.TaskSpec { return queue.TaskSpec{Name: "job", Key: fmt.Sprintf("r%d-%d", round, i)} })
		claimed := b.claim(t, 300)
		leases := make([]queue.Lease, len(claimed))
		done := make([]queue.Completion, len(claimed))
		for i, c := range claimed {
			leases[len(claimed)-1-i] = c.Lease
			done[i] = queue.Completion{Lease: c.Lease, State: queue.TaskDone}
		}
		stop := make(chan struct{})
		extended := make(chan error, 1)
		go func() {
			for {
				if _, err := b.driver.ExtendLeases(b.ctx, leases, time.Minute); err != nil {
					extended <- err
					return
				}
				select {
				case <-stop:
					extended <- nil
					return
				default:
				}
			}
		}()
		_, err := b.driver.Finish(b.ctx, done)
		close(stop)
		for _, e := range []error{err, <-extended} {
			var pqErr *pq.Error
			if errors.As(e, &pqErr) && pqErr.Code == "40P01" {
				t.Fatalf("round %d: %v", round, e)
			}
			requireNoError(t, e)
		}
		slices.Reverse(leases)
	}
}
