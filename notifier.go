package queue

import (
	"context"
	"errors"
)

// listener is the driver capability behind NOTIFY wake-ups.
type listener interface {
	Listen(ctx context.Context, onName func(name string), onReconnect func(), onError func(error)) (stop func(), err error)
}

// startListener wakes the stream of each task name announced by an insert,
// and every stream after a reconnect (announcements may have been missed).
// Without LISTEN support the streams poll.
func (m *SyncManager) startListener(ctx context.Context) {
	l, ok := m.driver.(listener)
	if !ok || !m.cfg.listen {
		return
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
		m.nudgeAll,
		m.report)
	if errors.Is(err, ErrListenUnsupported) {
		m.cfg.logger.Info("esync: no LISTEN connection; streams poll", "interval", m.cfg.pollInterval)
		return
	}
	if err != nil {
		m.report(err)
		return
	}
	m.stopListen = stop
}
