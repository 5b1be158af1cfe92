package otelqueue

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/esync/queue"
)

// Driver is a queue.PostgresDriver that records metrics of the calls a
// SyncManager makes: claims and their latency, lease extensions and lost
// leases, rescues, and errors by call. It embeds the PostgresDriver, so it
// has every method of it — the capabilities a SyncManager needs
// (RunRecorder, UnhandledCanceller, ExclusiveLocker, Listener) included —
// and the calls it does not measure go straight through.
type Driver struct {
	*queue.PostgresDriver

	claimed   metric.Int64Counter
	claimTime metric.Float64Histogram
	extended  metric.Int64Counter
	lost      metric.Int64Counter
	rescued   metric.Int64Counter
	errs      metric.Int64Counter
}

// WrapDriver returns d with its calls measured. Give the result to
// queue.NewSyncManager (and queue.NewTaskManager, to count insert errors).
func WrapDriver(d *queue.PostgresDriver, opts ...Option) (*Driver, error) {
	if d == nil {
		return nil, errors.New("otelqueue: WrapDriver: nil driver")
	}
	c, meter, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	w := &Driver{PostgresDriver: d}
	var errs [6]error
	w.claimed, errs[0] = meter.Int64Counter("esync.claim.tasks",
		metric.WithDescription("Tasks claimed to run."), metric.WithUnit("{task}"))
	w.claimTime, errs[1] = meter.Float64Histogram("esync.claim.duration",
		metric.WithDescription("How long claim calls took, by whether they claimed anything."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(c.durations...))
	w.extended, errs[2] = meter.Int64Counter("esync.lease.extended",
		metric.WithDescription("Leases of running tasks extended."), metric.WithUnit("{lease}"))
	w.lost, errs[3] = meter.Int64Counter("esync.lease.lost",
		metric.WithDescription("Leases found lost when extending them or finishing their task."), metric.WithUnit("{lease}"))
	w.rescued, errs[4] = meter.Int64Counter("esync.rescue.tasks",
		metric.WithDescription("Tasks whose lease expired, returned to the queue or failed."), metric.WithUnit("{task}"))
	w.errs, errs[5] = meter.Int64Counter("esync.driver.errors",
		metric.WithDescription("Failed driver calls, by call."), metric.WithUnit("{error}"))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return w, nil
}

// failed counts err, if any, against call; a call the caller cancelled is
// not a database error.
func (w *Driver) failed(call string, err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	w.errs.Add(context.Background(), 1, metric.WithAttributes(attribute.String(attrCall, call)))
}

// AddTasks implements queue.Driver, counting errors.
func (w *Driver) AddTasks(ctx context.Context, tx *sql.Tx, tasks []queue.NewTask) ([]int64, error) {
	ids, err := w.PostgresDriver.AddTasks(ctx, tx, tasks)
	w.failed("add_tasks", err)
	return ids, err
}

// Claim implements queue.Driver, counting claimed tasks and timing the call.
func (w *Driver) Claim(ctx context.Context, p queue.ClaimParams) ([]queue.ClaimedTask, error) {
	start := time.Now()
	tasks, err := w.PostgresDriver.Claim(ctx, p)
	if err != nil {
		w.failed("claim", err)
		return tasks, err
	}
	w.claimTime.Record(context.Background(), time.Since(start).Seconds(),
		metric.WithAttributes(attribute.Bool("claimed", len(tasks) > 0)))
	if len(tasks) > 0 {
		w.claimed.Add(context.Background(), int64(len(tasks)))
	}
	return tasks, err
}

// Finish implements queue.Driver, counting lost leases and errors.
func (w *Driver) Finish(ctx context.Context, completions []queue.Completion) ([]int64, error) {
	lost, err := w.PostgresDriver.Finish(ctx, completions)
	w.failed("finish", err)
	if len(lost) > 0 {
		w.lost.Add(context.Background(), int64(len(lost)), metric.WithAttributes(attribute.String(attrCall, "finish")))
	}
	return lost, err
}

// ExtendLeases implements queue.Driver, counting extended and lost leases.
func (w *Driver) ExtendLeases(ctx context.Context, leases []queue.Lease, d time.Duration) ([]int64, error) {
	lost, err := w.PostgresDriver.ExtendLeases(ctx, leases, d)
	if err != nil {
		w.failed("extend_leases", err)
		return lost, err
	}
	if n := len(leases) - len(lost); n > 0 {
		w.extended.Add(context.Background(), int64(n))
	}
	if len(lost) > 0 {
		w.lost.Add(context.Background(), int64(len(lost)), metric.WithAttributes(attribute.String(attrCall, "extend_leases")))
	}
	return lost, err
}

// RescueExpired implements queue.Driver, counting rescued tasks.
func (w *Driver) RescueExpired(ctx context.Context, p queue.RescueParams) (int, error) {
	n, err := w.PostgresDriver.RescueExpired(ctx, p)
	w.failed("rescue_expired", err)
	if n > 0 {
		w.rescued.Add(context.Background(), int64(n))
	}
	return n, err
}

// DeleteFinished implements queue.Driver, counting errors.
func (w *Driver) DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error) {
	n, err := w.PostgresDriver.DeleteFinished(ctx, before, limit)
	w.failed("delete_finished", err)
	return n, err
}

// StartScheduledRun implements queue.RunRecorder, counting errors.
func (w *Driver) StartScheduledRun(ctx context.Context, name, startedBy string, window time.Duration) (bool, error) {
	ok, err := w.PostgresDriver.StartScheduledRun(ctx, name, startedBy, window)
	w.failed("start_scheduled_run", err)
	return ok, err
}

// CancelUnhandled counts errors of the PostgresDriver's CancelUnhandled.
func (w *Driver) CancelUnhandled(ctx context.Context, known []string, limit int) (int, error) {
	n, err := w.PostgresDriver.CancelUnhandled(ctx, known, limit)
	w.failed("cancel_unhandled", err)
	return n, err
}

// TryExclusive implements queue.ExclusiveLocker, counting errors.
func (w *Driver) TryExclusive(ctx context.Context, name string) (*queue.ExclusiveLock, error) {
	l, err := w.PostgresDriver.TryExclusive(ctx, name)
	w.failed("try_exclusive", err)
	return l, err
}

// Listen implements queue.Listener, counting errors of the listening
// connection.
func (w *Driver) Listen(ctx context.Context, h queue.ListenHandlers) (func(), error) {
	onError := h.Error
	h.Error = func(err error) {
		w.failed("listen", err)
		if onError != nil {
			onError(err)
		}
	}
	stop, err := w.PostgresDriver.Listen(ctx, h)
	w.failed("listen", err)
	return stop, err
}

// The capabilities a SyncManager needs, checked at compile time.
var (
	_ queue.Driver           = (*Driver)(nil)
	_ queue.RunRecorder      = (*Driver)(nil)
	_ queue.ProcessRegistrar = (*Driver)(nil)
	_ queue.FiringClaimer    = (*Driver)(nil)
	_ queue.ExclusiveLocker  = (*Driver)(nil)
	_ queue.Listener         = (*Driver)(nil)
)
