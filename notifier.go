package queue

import (
	"context"
	"errors"
	"time"
)

// notifier is the service that wakes the stream of each task name
// announced by an insert, and every stream whenever the listening
// connection is (re)established (announcements may have been missed). It
// does not wait for the database: until LISTEN connects, streams poll.
// Without a Listener driver, or with WithListen(false), it does nothing.
type notifier struct {
	m      *SyncManager
	faults *faultReport
	stopFn func()
}

func newNotifier(m *SyncManager) *notifier {
	return &notifier{m: m, faults: newFaultReport(m, "listen", time.Second, time.Second)}
}

func (n *notifier) start(ctx context.Context) error {
	m := n.m
	l, ok := m.driver.(Listener)
	if !ok || !m.cfg.listen {
		return nil
	}
	byName := map[string]*stream{}
	for name, h := range m.handlers {
		byName[name] = m.streams[h.stream]
	}
	stop, err := l.Listen(ctx,
		func(name string) {
			if s := byName[name]; s != nil {
				s.nudge()
			}
		},
		func() {
			n.faults.ok()
			m.nudgeAll()
		},
		func(err error) { n.faults.fail(err) })
	if errors.Is(err, ErrListenUnsupported) {
		m.cfg.logger.Info("esync: no LISTEN connection; streams poll", "interval", m.cfg.pollInterval)
		return nil
	}
	if err != nil {
		return err
	}
	n.stopFn = stop
	return nil
}

func (n *notifier) stop(context.Context) error {
	if n.stopFn != nil {
		n.stopFn()
	}
	return nil
}
