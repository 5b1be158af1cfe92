package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/esync/queue"
	"github.com/esync/queue/internal/workerconfig"
)

func init() { addCommand(newWorkerCommand) }

// exitNoTask is the exit status of `esync worker --once` when no task was
// due.
const exitNoTask = 3

// hardStopWait is how long a worker stopped hard (a second signal) waits
// for the cancelled actions before it exits anyway.
const hardStopWait = 5 * time.Second

// workerFlags are the options of `esync worker`.
type workerFlags struct {
	config          string
	check           bool
	once            bool
	untilIdle       bool
	maxIdle         time.Duration
	noRetry         bool
	shutdownTimeout time.Duration
	metrics         string
}

// newWorkerCommand is `esync worker --config FILE`.
func newWorkerCommand(a *app) *cobra.Command {
	var f workerFlags
	cmd := &cobra.Command{
		Use:   "worker --config FILE",
		Short: "Run the tasks and schedules of a configuration file",
		Long: `Worker runs the tasks of the queue with the built-in actions named in a TOML
configuration file (exec, webhook, sql, email; lifecycle webhooks; streams,
timeouts, retries, schedules), until it is stopped.

Secrets come from the environment: ${NAME} in a string value of the file is
the variable NAME, and such values are never printed. --check validates the
file without a database. The queue is taken from --dsn, $DATABASE_URL, or the
file's [queue] table.

SIGINT or SIGTERM stops claiming and waits up to --shutdown-timeout for the
running tasks; tasks still running then are cancelled and put back in the
queue. A second signal does that at once.

Exit status: 0 on a clean stop (with --once: a task ran, whatever its result),
1 when the work failed, 2 for a bad command line or configuration file, 3
with --once when no task was due.`,
		Example: `  esync worker --config esync.toml
  esync worker --config esync.toml --check
  esync worker --config esync.toml --once
  esync worker --config esync.toml --until-idle --max-idle 30s --no-retry
  esync worker --config esync.toml --metrics 127.0.0.1:9464`,
		Args: argsBetween(0, 0, "no arguments (the configuration is --config FILE)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWorker(cmd, a, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "the worker's TOML configuration file (required)")
	fl.BoolVar(&f.check, "check", false, "validate the configuration and exit, without a database")
	fl.BoolVar(&f.once, "once", false, "run one due task, then exit (status 3 if none was due)")
	fl.BoolVar(&f.untilIdle, "until-idle", false, "exit once no task is due and none runs; schedules do not run")
	fl.DurationVar(&f.maxIdle, "max-idle", 0, "with --until-idle: exit only after being idle this long (implies --until-idle)")
	fl.BoolVar(&f.noRetry, "no-retry", false, "failed tasks are not retried: every task gets one attempt")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 0, "how long a stop waits for running tasks (default: the file's shutdown_timeout, else 30s)")
	fl.StringVar(&f.metrics, "metrics", "", "serve Prometheus metrics on this address, such as 127.0.0.1:9464 (default: the file's metrics)")
	return cmd
}

// runWorker is the whole life of a worker.
func runWorker(cmd *cobra.Command, a *app, f workerFlags) error {
	stderr := cmd.ErrOrStderr()
	if f.config == "" {
		return usagef("esync worker needs --config FILE")
	}
	if f.maxIdle < 0 || f.shutdownTimeout < 0 {
		return usagef("--max-idle and --shutdown-timeout must not be negative")
	}
	if f.maxIdle > 0 {
		f.untilIdle = true
	}
	if f.once && f.untilIdle {
		return usagef("--once and --until-idle (or --max-idle) exclude each other")
	}
	cfg, err := workerconfig.Load(f.config)
	if err != nil {
		return usagef("%v", err)
	}
	if f.check {
		if err := cfg.Check(); err != nil {
			return usagef("%v", err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d task names, %d schedules)\n", f.config, len(cfg.Tasks), len(cfg.Schedules))
		return nil
	}
	// Everything this command prints goes through the redaction of the
	// configuration's secrets.
	out := &redactingWriter{w: stderr, redact: cfg.Redact}
	logger := slog.New(slog.NewTextHandler(out, nil))
	w := &worker{flags: f, cfg: cfg, logger: logger}
	if err := w.setup(cmd, a); err != nil {
		w.close()
		return redactError(err, cfg.Redact)
	}
	defer w.close()
	return redactError(w.run(), cfg.Redact)
}

// redactError returns err, or when its text holds a secret of the
// configuration the same kind of error without it.
func redactError(err error, redact func(string) string) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	clean := redact(text)
	switch {
	case clean == text:
		return err
	case isUsage(err):
		return usagef("%s", clean)
	}
	var exit exitError
	if errors.As(err, &exit) {
		return exitError{code: exit.code, msg: redact(exit.msg)}
	}
	return errors.New(clean)
}

// worker is one run of `esync worker`.
type worker struct {
	flags    workerFlags
	cfg      *workerconfig.Config
	logger   *slog.Logger
	manager  *queue.SyncManager
	metrics  *metricsServer
	closeDBs func() error
	activity activity
}

// setup opens the queue, builds the manager and registers the
// configuration.
func (w *worker) setup(cmd *cobra.Command, a *app) error {
	flags := cmd.Flags()
	q := w.cfg.Queue
	if !flags.Changed("dsn") && a.dsn == "" && os.Getenv("DATABASE_URL") == "" {
		a.dsn = q.DSN
	}
	if !flags.Changed("schema") && q.Schema != "" {
		a.schema = q.Schema
	}
	if !flags.Changed("table") && q.Table != "" {
		a.table = q.Table
	}
	pg, err := a.open(cmd.Context())
	if err != nil {
		return err
	}
	var driver queue.Driver = pg
	opts := append(w.cfg.ManagerOptions(), queue.WithLogger(w.logger))
	timeout := w.flags.shutdownTimeout
	switch {
	case timeout > 0:
	case w.cfg.Worker.ShutdownTimeout != nil:
		timeout = w.cfg.Worker.ShutdownTimeout.D()
	default:
		timeout = 30 * time.Second
	}
	w.flags.shutdownTimeout = timeout
	opts = append(opts, queue.WithStopTimeout(timeout))
	var middleware []queue.Middleware
	addr := w.flags.metrics
	if addr == "" {
		addr = w.cfg.Worker.Metrics
	}
	if addr != "" {
		if w.metrics, err = startMetrics(addr); err != nil {
			return err
		}
		wrapped, mw, err := w.metrics.instrument(pg)
		if err != nil {
			return err
		}
		driver = wrapped
		middleware = append(middleware, mw)
		w.logger.Info("serving metrics", "url", w.metrics.URL())
	}
	w.manager = queue.NewSyncManager(driver, opts...)
	w.manager.Use(append(middleware, w.activity.middleware)...)
	w.closeDBs, err = w.cfg.Register(w.manager, workerconfig.Options{
		NoRetry:     w.flags.noRetry,
		NoSchedules: w.flags.untilIdle,
		DB:          pg.DB(),
	})
	if err != nil {
		return usagef("%v", err)
	}
	return nil
}

// close releases what setup opened, after the manager stopped.
func (w *worker) close() {
	if w.closeDBs != nil {
		if err := w.closeDBs(); err != nil {
			w.logger.Error("closing databases", "err", err)
		}
	}
	if w.metrics != nil {
		if err := w.metrics.stop(); err != nil {
			w.logger.Error("stopping the metrics server", "err", err)
		}
	}
}

// run works the queue in the chosen mode until it is done or stopped.
func (w *worker) run() error {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)

	// runCtx bounds the run modes; graceCtx bounds the shutdown and is
	// cancelled by a second signal.
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	stop := newStopper(w, cancelRun)

	done := make(chan error, 1)
	go func() { done <- w.work(runCtx) }()
	w.logger.Info("worker started", "config", w.flags.config, "tasks", len(w.cfg.Tasks),
		"schedules", len(w.cfg.Schedules), "mode", w.mode())
	for {
		select {
		case err := <-done:
			if stopErr := stop.result(); stopErr != nil {
				return stopErr
			}
			return w.outcome(err, stop.signalled())
		case sig := <-signals:
			if stop.hard(sig) {
				select {
				case err := <-done:
					return w.outcome(err, true)
				case <-time.After(hardStopWait):
					return fmt.Errorf("stopped hard; running actions did not return within %s", hardStopWait)
				}
			}
		}
	}
}

// mode names the worker's mode for the log.
func (w *worker) mode() string {
	switch {
	case w.flags.once:
		return "once"
	case w.flags.maxIdle > 0:
		return "until idle for " + w.flags.maxIdle.String()
	case w.flags.untilIdle:
		return "until idle"
	}
	return "until stopped"
}

// work runs the manager in the chosen mode.
func (w *worker) work(ctx context.Context) error {
	m := w.manager
	switch {
	case w.flags.once:
		return m.RunOnce(ctx)
	case w.flags.untilIdle && w.flags.maxIdle == 0:
		return m.RunUntilIdle(ctx)
	}
	if err := m.Start(ctx); err != nil {
		return err
	}
	if w.flags.maxIdle > 0 {
		w.activity.waitIdle(ctx, w.flags.maxIdle)
	} else {
		<-ctx.Done()
	}
	// Stopped by a signal, the stopper is already shutting down and
	// Shutdown returns its result; idle, this is the graceful stop.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), w.flags.shutdownTimeout)
	defer cancel()
	return m.Shutdown(shutdownCtx)
}

// outcome turns how the work ended into the command's result.
func (w *worker) outcome(err error, signalled bool) error {
	ran := w.activity.finished.Load()
	switch {
	case w.flags.once && errors.Is(err, queue.ErrNoTasks):
		w.logger.Info("no task was due")
		return exitError{code: exitNoTask}
	case signalled && errors.Is(err, context.Canceled):
		err = nil // the run mode's context, cancelled by the stop
	}
	if err != nil {
		return err
	}
	if w.flags.once && ran == 0 {
		return exitError{code: exitInterrupted, msg: "interrupted before a task ran"}
	}
	w.logger.Info("worker stopped", "tasks_finished", ran)
	return nil
}

// stopper turns signals into a graceful and then a hard shutdown.
type stopper struct {
	w         *worker
	cancelRun context.CancelFunc
	mu        sync.Mutex
	signals   int
	cancel    context.CancelFunc // cancels the graceful shutdown's context
	done      chan struct{}
	err       error
}

func newStopper(w *worker, cancelRun context.CancelFunc) *stopper {
	return &stopper{w: w, cancelRun: cancelRun, done: make(chan struct{})}
}

// hard handles one signal: the first starts a graceful shutdown, the
// second makes it hard. It reports whether the stop is now hard.
func (s *stopper) hard(sig os.Signal) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signals++
	if s.signals == 1 {
		s.w.logger.Info("shutting down: waiting for running tasks; send the signal again to stop now",
			"signal", sig.String(), "timeout", s.w.flags.shutdownTimeout)
		ctx, cancel := context.WithTimeout(context.Background(), s.w.flags.shutdownTimeout)
		s.cancel = cancel
		go func() {
			err := s.w.manager.Shutdown(ctx)
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			close(s.done)
			// The run modes return once the manager is down.
			s.cancelRun()
		}()
		return false
	}
	s.w.logger.Warn("stopping now: running tasks are cancelled and put back in the queue", "signal", sig.String())
	s.cancel()
	return true
}

// signalled reports whether a signal stopped the worker.
func (s *stopper) signalled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signals > 0
}

// result waits for a shutdown started by a signal and returns its error.
func (s *stopper) result() error {
	if !s.signalled() {
		return nil
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// activity follows the task runs, for --max-idle and --once.
type activity struct {
	running  atomic.Int64
	finished atomic.Int64
	last     atomic.Int64 // unix nanos of the last start or end of a run
	wake     chan struct{}
	once     sync.Once
}

func (a *activity) init() {
	a.once.Do(func() {
		a.wake = make(chan struct{}, 1)
		a.last.Store(time.Now().UnixNano())
	})
}

// middleware counts the runs.
func (a *activity) middleware(next queue.TaskAction) queue.TaskAction {
	a.init()
	return queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		a.running.Add(1)
		a.last.Store(time.Now().UnixNano())
		defer func() {
			a.last.Store(time.Now().UnixNano())
			a.finished.Add(1)
			a.running.Add(-1)
		}()
		return next.Do(task)
	})
}

// waitIdle returns once no task has run for d, or when ctx ends.
func (a *activity) waitIdle(ctx context.Context, d time.Duration) {
	a.init()
	for {
		idleFor := time.Since(time.Unix(0, a.last.Load()))
		wait := d - idleFor
		if a.running.Load() > 0 {
			wait = max(d/4, time.Millisecond)
		} else if wait <= 0 {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// exitError ends the command with a particular exit status.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// redactingWriter removes the configuration's secrets from what it writes.
type redactingWriter struct {
	mu     sync.Mutex
	w      io.Writer
	redact func(string) string
}

func (r *redactingWriter) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := io.WriteString(r.w, r.redact(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
