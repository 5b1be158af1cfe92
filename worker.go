package queue

// startTask runs ct on an idle worker of its stream, or on a new one. A
// worker that runs one task after another spares each task a goroutine
// start and the growth of a fresh stack.
func (m *SyncManager) startTask(s *stream, ct *ClaimedTask) {
	select {
	case s.handoff <- ct:
	default:
		go m.work(s, ct)
	}
}

// work runs ct, then each task its stream hands it, until the stream
// retires its idle workers or the manager stops claiming. A run settled
// without its action (a timeout) keeps its worker until the action returns.
func (m *SyncManager) work(s *stream, ct *ClaimedTask) {
	for {
		m.runTask(s, ct)
		select {
		case ct = <-s.handoff:
		case <-s.retire:
			return
		case <-m.stopClaiming:
			return
		}
	}
}

// retireIdleWorkers ends the stream's workers that wait for a task. A
// stream does so when it has had no work for a poll interval.
func (s *stream) retireIdleWorkers() {
	for {
		select {
		case s.retire <- struct{}{}:
		default:
			return
		}
	}
}
