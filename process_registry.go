package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"time"
)

// processRegistry keeps this manager's entry in the process registry: it
// registers at start, renews the entry every heartbeat interval and marks it
// stopped at shutdown. Other processes read the registry to tell which task
// names some live process handles (cancelling unhandled tasks) and to list
// the fleet.
type processRegistry struct {
	m     *SyncManager
	reg   ProcessRegistrar
	entry Process
	ctx   context.Context // cancelled by stop: ends a heartbeat in flight
	quit  context.CancelFunc
	done  chan struct{}
}

// newProcessRegistry describes this manager; nil when the driver keeps no
// registry. Call after the handlers, streams and schedules are final.
func newProcessRegistry(m *SyncManager) *processRegistry {
	reg, ok := m.driver.(ProcessRegistrar)
	if !ok {
		return nil
	}
	host, _ := os.Hostname()
	p := Process{ID: newProcessID(), Host: host, PID: os.Getpid(), Version: esyncVersion()}
	for name := range m.handlers {
		p.TaskNames = append(p.TaskNames, name)
	}
	for name := range m.streams {
		p.Streams = append(p.Streams, name)
	}
	for _, j := range m.schedules {
		p.Schedules = append(p.Schedules, j.name)
	}
	sort.Strings(p.TaskNames)
	sort.Strings(p.Streams)
	sort.Strings(p.Schedules)
	ctx, quit := context.WithCancel(context.Background())
	return &processRegistry{m: m, reg: reg, entry: p, ctx: ctx, quit: quit, done: make(chan struct{})}
}

// ttl is how long an entry counts as live after a heartbeat.
func (r *processRegistry) ttl() time.Duration { return 3 * r.m.cfg.fleet.heartbeat }

// start registers the process, so that it is listed once Start returns,
// waiting for that at most a second (and not past ctx): the database may be
// down, and then the failure is reported and the next heartbeat tries
// again. Then it renews the entry in the background.
func (r *processRegistry) start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, min(time.Second, r.m.cfg.fleet.heartbeat))
	r.beat(ctx)
	cancel()
	go r.run()
	return nil
}

func (r *processRegistry) beat(ctx context.Context) {
	if err := r.reg.Heartbeat(ctx, r.entry, r.ttl()); err != nil && r.ctx.Err() == nil {
		r.m.report(fmt.Errorf("process registry: %w", err))
	}
}

func (r *processRegistry) run() {
	defer close(r.done)
	t := time.NewTicker(r.m.cfg.fleet.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(r.ctx, r.m.cfg.fleet.heartbeat)
		r.beat(ctx)
		cancel()
	}
}

// stop ends the heartbeat and marks the entry stopped, within ctx (at most
// 2s): the process no longer counts as live, and its task names stay known
// for the grace period.
func (r *processRegistry) stop(ctx context.Context) error {
	r.quit()
	if err := waitStopped(ctx, r.done, "process registry heartbeat"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := r.reg.MarkStopped(ctx, r.entry.ID); err != nil {
		return fmt.Errorf("process registry: %w", err)
	}
	return nil
}

func newProcessID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// esyncVersion is the version of this module the program was built with.
func esyncVersion() string {
	const path = "github.com/esync/queue"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if bi.Main.Path == path {
		return bi.Main.Version
	}
	for _, dep := range bi.Deps {
		if dep.Path == path {
			if dep.Replace != nil {
				return dep.Replace.Version
			}
			return dep.Version
		}
	}
	return "unknown"
}
