package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-multierror"
)

// SyncManager runs task actions and scheduled actions in streams: lanes whose
// work runs one at a time (or up to the stream's concurrency), side by side
// with other streams, in this process and across processes sharing the queue.
type SyncManager struct {
	driver Driver
	cfg    managerConfig

	mu         sync.Mutex
	handlers   map[string]*taskHandler
	streams    map[string]*stream
	schedules  []*scheduledJob
	middleware []Middleware
	onError    func(error)
	state      managerState
	// schedulesOff keeps scheduled actions from running (RunUntilIdle).
	schedulesOff bool

	// Set by Start.
	services  supervisor     // every background service: started in order, stopped in reverse
	actions   sync.WaitGroup // actions in flight
	completer *completer
	leases    *leaseKeeper
	sched     *scheduler
	notifier  *notifier
	finishGen atomic.Int64     // counts persisted completion batches
	budget    atomic.Int64     // claims left; unlimited unless RunOnce
	registry  *processRegistry // nil without a registry in the driver
	lastPrune time.Time        // maintenance's last prune (process_registry.go)

	started  chan struct{} // closed when Start has set everything up (or failed)
	stopped  chan struct{} // closed when Stop or Shutdown has finished
	stopErr  error         // guarded by mu
	stopOnce sync.Once
}

type managerState int

const (
	stateNew managerState = iota
	stateRunning
	stateStopped
)

// NewSyncManager returns a manager over driver. Register handlers, schedules
// and streams, then Run (or Start).
func NewSyncManager(driver Driver, opts ...ManagerOption) *SyncManager {
	cfg := defaultManagerConfig()
	for _, opt := range opts {
		opt(&cfg)
	}
	m := &SyncManager{
		driver:   driver,
		cfg:      cfg,
		handlers: map[string]*taskHandler{},
		streams:  map[string]*stream{},
		started:  make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	m.budget.Store(unlimited)
	return m
}

// unlimited marks a claim budget without limit.
const unlimited = -1

// SetErrorHandler receives every error of the running manager: failed
// claims and finishes, scheduled action errors and panics, lost leases.
// Without one, errors are logged.
func (m *SyncManager) SetErrorHandler(h func(error)) {
	m.mu.Lock()
	m.onError = h
	m.mu.Unlock()
}

// Use adds middleware around every task action (outermost first).
func (m *SyncManager) Use(mw ...Middleware) {
	m.mu.Lock()
	m.middleware = append(m.middleware, mw...)
	m.mu.Unlock()
}

// RegisterTaskHandler makes action run the tasks named name. Register before
// Run/Start.
func (m *SyncManager) RegisterTaskHandler(action TaskAction, name string, opts ...TaskOption) error {
	if action == nil {
		return fmt.Errorf("queue: register %q: nil action", name)
	}
	h := &taskHandler{name: name, action: action, timeout: DefaultTaskTimeout, retry: DefaultRetryPolicy}
	if s, ok := action.(streamer); ok {
		h.stream = s.Stream()
	}
	return m.register(h, opts)
}

// register checks h with opts applied and adds it.
func (m *SyncManager) register(h *taskHandler, opts []TaskOption) error {
	name := h.name
	if err := checkText("name", name, MaxNameLength, true); err != nil {
		return fmt.Errorf("queue: register: %w", err)
	}
	for _, opt := range opts {
		opt(h)
	}
	if h.stream == "" {
		h.stream = name
	}
	if h.timeout <= 0 {
		return fmt.Errorf("queue: register %q: timeout must be positive", name)
	}
	if h.retry == nil {
		return fmt.Errorf("queue: register %q: nil retry policy", name)
	}
	if v, ok := h.retry.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("queue: register %q: %w", name, err)
		}
	}
	if h.maxAttempts < 0 {
		return fmt.Errorf("queue: register %q: max attempts must not be negative, got %d", name, h.maxAttempts)
	}
	if h.batch == nil && h.batchWait != 0 {
		return fmt.Errorf("queue: register %q: WithBatchWait is for batch handlers (RegisterBatchHandler)", name)
	}
	if h.batch != nil && len(h.middleware) > 0 {
		return fmt.Errorf("queue: register %q: WithTaskMiddleware wraps single-task actions, not batch actions", name)
	}
	if h.batchWait < 0 || h.batchWait > maxBatchWait {
		return fmt.Errorf("queue: register %q: batch wait must be between 0 and %s, got %s", name, maxBatchWait, h.batchWait)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state != stateNew {
		return fmt.Errorf("queue: register %q: manager already started", name)
	}
	if _, dup := m.handlers[name]; dup {
		return fmt.Errorf("queue: register %q: a handler is already registered", name)
	}
	for _, other := range m.handlers {
		if other.stream == h.stream && (other.batch == nil) != (h.batch == nil) {
			return fmt.Errorf("queue: register %q: stream %q holds %s, and a stream holds either batch actions or task actions; give one of them a stream of its own (InStream)",
				name, h.stream, other.kind()+" "+strconv.Quote(other.name))
		}
	}
	m.handlers[name] = h
	m.streamLocked(h.stream)
	return nil
}

// ConfigureStream sets a stream's concurrency or makes it exclusive across
// processes. Streams not configured run one thing at a time.
func (m *SyncManager) ConfigureStream(name string, opts ...StreamOption) error {
	if name == "" {
		return errors.New("queue: configure stream: empty name")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state != stateNew {
		return fmt.Errorf("queue: configure stream %q: manager already started", name)
	}
	s := m.streamLocked(name)
	for _, opt := range opts {
		opt(s)
	}
	if s.concurrency < 1 {
		return fmt.Errorf("queue: configure stream %q: concurrency must be at least 1", name)
	}
	if s.rateLimit < 0 || (s.rateLimit > 0 && s.ratePer < time.Millisecond) {
		return fmt.Errorf("queue: configure stream %q: WithRateLimit needs n >= 1 and a period of at least 1ms, got %d per %s", name, s.rateLimit, s.ratePer)
	}
	return nil
}

func (m *SyncManager) streamLocked(name string) *stream {
	s, ok := m.streams[name]
	if !ok {
		s = &stream{m: m, name: name, concurrency: 1}
		m.streams[name] = s
	}
	return s
}

// Start launches the background services (lease keeper, result writer,
// maintenance, listener, stream loops, scheduler) and returns. It does not
// need the database to be up: streams claim once it answers. ctx bounds only
// the start itself. Start fails on a setting that is out of range or a
// capability the driver lacks.
func (m *SyncManager) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.state != stateNew {
		m.mu.Unlock()
		return errors.New("queue: manager can be started once")
	}
	// From here on registrations are refused, so the maps are only read.
	m.state = stateRunning
	m.mu.Unlock()
	// Shutdown waits for this before it touches what Start sets up.
	defer close(m.started)
	err := m.cfg.validate()
	if err == nil {
		err = m.checkCapabilities()
	}
	if err == nil {
		err = m.checkPooler(ctx)
	}
	if err == nil {
		err = m.startServices(ctx)
	}
	if err != nil {
		m.mu.Lock()
		m.state = stateStopped
		m.mu.Unlock()
	}
	return err
}

// startServices builds the services and starts them in order: what keeps
// runs alive first, what starts them last, so that the reverse order stops
// claiming first and writes results last.
func (m *SyncManager) startServices(ctx context.Context) error {
	for name, h := range m.handlers {
		s := m.streams[h.stream]
		s.names = append(s.names, name)
		if h.batch != nil {
			s.batchMax = max(s.batchMax, h.batchMax)
			continue
		}
		h.action = Chain(h.action, append(append([]Middleware{}, m.middleware...), h.middleware...)...)
	}
	for _, s := range m.streams {
		sort.Strings(s.names)
		s.prepare()
	}
	sched, err := m.newScheduler()
	if err != nil {
		return err
	}
	m.sched = sched
	m.leases = newLeaseKeeper(m)
	m.completer = newCompleter(m)
	m.notifier = newNotifier(m)
	m.services.add(m.leases, m.completer)
	if m.registry = newProcessRegistry(m); m.registry != nil {
		m.services.add(m.registry)
	}
	m.services.add(newMaintenance(m),
		// Listen before the first claims: a task added after a stream's
		// first (empty) claim is announced only by its NOTIFY.
		m.notifier)
	// Stopped in reverse: claiming ends, then scheduling, then the
	// running actions are waited for.
	m.services.addWork(runningActions{m})
	if m.sched != nil {
		m.services.addWork(m.sched)
	}
	for _, s := range m.streams {
		m.services.addWork(s)
	}
	return m.services.startAll(ctx)
}

// Run starts the manager and blocks until Stop is called (the original
// call). It returns what Stop returned.
func (m *SyncManager) Run() error {
	if err := m.Start(context.Background()); err != nil {
		return err
	}
	<-m.stopped
	return m.stopResult()
}

// stopResult is what the shutdown returned.
func (m *SyncManager) stopResult() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stopErr
}

// Stop shuts the manager down, giving running actions the stop timeout
// (WithStopTimeout) to finish, and makes Run return.
func (m *SyncManager) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.stopTimeout)
	defer cancel()
	return m.Shutdown(ctx)
}

// Shutdown stops claiming, waits for running actions until ctx is done,
// then cancels the ones still running and releases their tasks back to the
// queue, flushes results and stops every service. It returns every error met
// on the way. Calling it again returns the first result.
func (m *SyncManager) Shutdown(ctx context.Context) error {
	m.stopOnce.Do(func() {
		err := m.shutdown(ctx)
		m.mu.Lock()
		m.stopErr = err
		m.mu.Unlock()
		close(m.stopped)
	})
	<-m.stopped
	return m.stopResult()
}

func (m *SyncManager) shutdown(ctx context.Context) error {
	m.mu.Lock()
	was := m.state
	m.state = stateStopped
	m.mu.Unlock()
	if was != stateRunning {
		return nil
	}
	<-m.started
	if m.completer == nil { // Start failed and cleaned up after itself
		return nil
	}
	// Claiming and scheduling stop first; running actions get until a
	// little before the deadline, so that their results can be written in
	// what is left.
	workCtx, cancel := context.WithDeadline(ctx, flushReserveDeadline(ctx))
	defer cancel()
	return m.services.stopAll(ctx, workCtx)
}

// flushReserveDeadline is when a shutdown bounded by ctx stops waiting for
// running actions and stops them hard: a quarter of the time left (at most
// 2s, at least 100ms when there is that much) is kept for the cancelled
// actions to return and for writing the results.
func flushReserveDeadline(ctx context.Context) time.Time {
	deadline, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(365 * 24 * time.Hour)
	}
	left := time.Until(deadline)
	return deadline.Add(-max(min(left/4, 2*time.Second), min(left, 100*time.Millisecond)))
}

// RunUntilIdle runs the manager until no registered task is due and nothing
// is running, then shuts it down; scheduled actions do not run. Tasks
// waiting for a retry backoff or a delay stay queued. It suits batch jobs
// (the original's "die if idle"). ctx bounds the whole run.
func (m *SyncManager) RunUntilIdle(ctx context.Context) error {
	return m.runUntil(ctx, nil)
}

// RunOnce runs one due task (of any registered name), waits for its
// result and shuts the manager down; scheduled actions do not run. It
// returns ErrNoTasks when no task was due: the original's single-shot mode.
func (m *SyncManager) RunOnce(ctx context.Context) error {
	m.budget.Store(1)
	if err := m.runUntil(ctx, nil); err != nil {
		return err
	}
	if m.budget.Load() > 0 {
		return ErrNoTasks
	}
	return nil
}

// RunUntilDone runs the manager until every task of the registered names
// has finished, waiting out retry backoffs and delays, then shuts it down;
// scheduled actions do not run. ctx bounds the whole run.
func (m *SyncManager) RunUntilDone(ctx context.Context) error {
	return m.runUntil(ctx, func() (bool, error) {
		for name := range m.handlers {
			n, err := m.driver.CountTasks(ctx, TaskFilter{Name: name, States: []TaskState{TaskReady, TaskRetry, TaskInProgress}})
			if err != nil || n > 0 {
				return false, err
			}
		}
		return true, nil
	})
}

// runUntil starts the manager and shuts it down once it has been idle for a
// few checks in a row and done (if given) agrees.
func (m *SyncManager) runUntil(ctx context.Context, done func() (bool, error)) error {
	m.mu.Lock()
	m.schedulesOff = true
	m.mu.Unlock()
	if err := m.Start(ctx); err != nil {
		return err
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for calm := 0; calm < 3; {
		select {
		case <-ctx.Done():
			return multierror.Append(ctx.Err(), m.Stop()).ErrorOrNil()
		case <-tick.C:
		}
		if !m.idle() {
			calm = 0
			continue
		}
		calm++
		if calm == 3 && done != nil {
			ok, err := done()
			if err != nil {
				return multierror.Append(err, m.Stop()).ErrorOrNil()
			}
			if !ok {
				calm = 0
				time.Sleep(min(m.cfg.pollInterval, 50*time.Millisecond))
				m.nudgeAll()
			}
		}
	}
	return m.Shutdown(ctx)
}

// nudgeAll wakes every stream.
func (m *SyncManager) nudgeAll() {
	for _, s := range m.streams {
		s.nudge()
	}
}

// idle reports whether every stream's last claim, made after the last
// persisted completion, found nothing and nothing runs or waits to finish.
func (m *SyncManager) idle() bool {
	gen := m.finishGen.Load()
	if m.completer.pendingCount() > 0 {
		return false
	}
	idle := true
	for _, s := range m.streams {
		if len(s.names) == 0 {
			continue
		}
		if s.running.Load() > 0 {
			return false
		}
		if s.emptyAtGen.Load() != gen {
			// Its last empty claim came before the latest results, which
			// may have unblocked a task of its names: look again now rather
			// than after the poll interval.
			s.nudge()
			idle = false
		}
	}
	return idle
}

// processName identifies this process in the schedule table.
func processName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}
