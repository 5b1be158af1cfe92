package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-co-op/gocron/v2"
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
	runCtx       context.Context // parent of scheduled runs' and services' contexts
	cancelRuns   context.CancelCauseFunc
	stopClaiming chan struct{}
	streamLoops  sync.WaitGroup // the streams' claim loops
	loops        sync.WaitGroup // background services
	actions      sync.WaitGroup // actions in flight
	completer    *completer
	leases       *leaseKeeper
	registry     *processRegistry // nil without a registry in the driver
	lastPrune    time.Time        // maintenance's last prune (process_registry.go)
	scheduler    gocron.Scheduler
	stopListen   func()
	finishGen    atomic.Int64 // counts persisted completion batches
	budget       atomic.Int64 // claims left; unlimited unless RunOnce

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

// errShutdown is the cause given to actions' contexts at a hard stop.
var errShutdown = errors.New("queue: manager shutting down")

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
	if err := checkText("name", name, MaxNameLength, true); err != nil {
		return fmt.Errorf("queue: register: %w", err)
	}
	h := &taskHandler{name: name, action: action, timeout: DefaultTaskTimeout, retry: DefaultRetryPolicy}
	if s, ok := action.(streamer); ok {
		h.stream = s.Stream()
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
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state != stateNew {
		return fmt.Errorf("queue: register %q: manager already started", name)
	}
	if _, dup := m.handlers[name]; dup {
		return fmt.Errorf("queue: register %q: a handler is already registered", name)
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
	return nil
}

func (m *SyncManager) streamLocked(name string) *stream {
	s, ok := m.streams[name]
	if !ok {
		s = &stream{name: name, concurrency: 1}
		m.streams[name] = s
	}
	return s
}

// Start launches the stream loops, the scheduler, the listener and the
// maintenance services, and returns. ctx bounds only the start itself.
func (m *SyncManager) Start(ctx context.Context) error {
	if err := m.cfg.checkOptions(); err != nil {
		return err
	}
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

	m.runCtx, m.cancelRuns = context.WithCancelCause(context.Background())
	m.stopClaiming = make(chan struct{})
	for name, h := range m.handlers {
		h.action = Chain(h.action, append(append([]Middleware{}, m.middleware...), h.middleware...)...)
		s := m.streams[h.stream]
		s.names = append(s.names, name)
	}
	if err := m.startScheduler(); err != nil {
		m.cancelRuns(err)
		m.mu.Lock()
		m.state = stateStopped
		m.mu.Unlock()
		return err
	}
	m.completer = newCompleter(m)
	m.leases = newLeaseKeeper(m)
	for _, s := range m.streams {
		sort.Strings(s.names)
		s.start()
	}
	// Listen before the first claims: a task added after a stream's first
	// (empty) claim is announced only by its NOTIFY.
	m.startListener(ctx)
	for _, s := range m.streams {
		for range s.claimers(m.cfg.batchSize) {
			m.streamLoops.Add(1)
			go m.runStream(s)
		}
	}
	if m.registry = newProcessRegistry(m); m.registry != nil {
		m.registry.start(ctx)
	}
	m.loops.Add(2)
	go m.leases.run()
	go m.runMaintenance()
	if m.scheduler != nil {
		m.scheduler.Start()
	}
	return nil
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
	var errs *multierror.Error
	close(m.stopClaiming)
	// The scheduler waits (up to the stop timeout) for scheduled runs in
	// progress, alongside the task actions: when ctx ends first, both get
	// their context cancelled.
	schedErr := make(chan error, 1)
	if m.scheduler != nil {
		go func() { schedErr <- m.scheduler.Shutdown() }()
	} else {
		schedErr <- nil
	}
	// Stream loops end after their current claim has started its tasks;
	// only then is the set of running actions complete.
	m.streamLoops.Wait()
	done := make(chan struct{})
	var serr error
	go func() { m.actions.Wait(); serr = <-schedErr; close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		// Actions still running get their context cancelled; their tasks
		// are released back to the queue.
		m.cancelRuns(errShutdown)
		m.leases.endAll(errShutdown)
		<-done
	}
	if serr != nil {
		errs = multierror.Append(errs, fmt.Errorf("scheduler shutdown: %w", serr))
	}
	errs = multierror.Append(errs, m.completer.close(ctx))
	m.cancelRuns(errShutdown)
	if m.stopListen != nil {
		m.stopListen()
	}
	m.loops.Wait()
	if m.registry != nil {
		errs = multierror.Append(errs, m.registry.stop(ctx))
	}
	for _, s := range m.streams {
		if err := s.releaseExclusive(); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	return errs.ErrorOrNil()
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
			return multierror.Append(ctx.Err(), m.Shutdown(context.Background())).ErrorOrNil()
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
				return multierror.Append(err, m.Shutdown(context.Background())).ErrorOrNil()
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
	if m.completer.pending() > 0 {
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

// report hands an error to the error handler, or logs it.
func (m *SyncManager) report(err error) {
	if err == nil {
		return
	}
	m.mu.Lock()
	h := m.onError
	m.mu.Unlock()
	if h != nil {
		h(err)
		return
	}
	m.cfg.logger.Error("esync", "err", err)
}

// processName identifies this process in the schedule table.
func processName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}
