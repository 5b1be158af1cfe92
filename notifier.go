package queue

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// notifier is the service that wakes the stream of each task name
// announced by an insert, and every stream whenever the listening
// connection is (re)established (announcements may have been missed). It
// does not wait for the database: until LISTEN connects, streams poll.
// Without a Listener driver, or with WithListen(false), it does nothing.
type notifier struct {
	m         *SyncManager
	faults    *faultReport
	stopFn    func()
	connected atomic.Bool
	ctx       context.Context // ends at stop
	cancel    context.CancelFunc
}

// listening reports whether the LISTEN connection is up.
func (n *notifier) listening() bool { return n != nil && n.connected.Load() }

func newNotifier(m *SyncManager) *notifier {
	return &notifier{m: m, faults: newFaultReport(m, "listen", time.Second, time.Second)}
}

func (n *notifier) start(ctx context.Context) error {
	m := n.m
	n.ctx, n.cancel = context.WithCancel(context.WithoutCancel(ctx))
	l, ok := m.driver.(Listener)
	if !ok || !m.cfg.listen {
		return nil
	}
	byName := map[string]*stream{}
	for name, h := range m.handlers {
		byName[name] = m.streams[h.stream]
	}
	stop, err := l.Listen(ctx, ListenHandlers{
		Task: func(name string) {
			if s := byName[name]; s != nil {
				s.nudge()
			}
		},
		Control: n.control,
		Reconnect: func() {
			n.connected.Store(true)
			n.faults.ok()
			m.nudgeAll()
			// Cancellations requested before it connected were not heard.
			go m.leases.watchCancelsNow(n.ctx)
		},
		Error: func(err error) {
			n.connected.Store(false)
			n.faults.fail(err)
		},
	})
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
	if n.cancel != nil {
		n.cancel()
	}
	if n.stopFn != nil {
		n.stopFn()
	}
	return nil
}

// control acts on an operator's announcement: a cancelled task that runs
// here is cancelled, a resumed stream is woken.
func (n *notifier) control(msg string) {
	verb, arg, _ := strings.Cut(msg, " ")
	switch verb {
	case "cancel":
		if id, err := strconv.ParseInt(arg, 10, 64); err == nil {
			n.m.leases.cancelRequested(id)
		}
	case "resume":
		if s := n.m.streams[arg]; s != nil {
			s.nudge()
		}
	}
}
