package otelqueue

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/esync/queue"
)

// Middleware returns queue middleware that records, for every run of a
// task: esync.task.finished and esync.task.duration by task name and
// result, and for a task's first attempt esync.task.start_delay, the time
// from its insert to its start (later attempts wait out a backoff, which is
// not queue delay). A panic is recorded with result "panic" and passed on
// to the manager, which recovers it. Add it with SyncManager.Use.
func Middleware(opts ...Option) (queue.Middleware, error) {
	c, meter, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	finished, err1 := meter.Int64Counter("esync.task.finished",
		metric.WithDescription("Task runs finished, by task name and result."), metric.WithUnit("{run}"))
	duration, err2 := meter.Float64Histogram("esync.task.duration",
		metric.WithDescription("How long task actions ran."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(c.durations...))
	delay, err3 := meter.Float64Histogram("esync.task.start_delay",
		metric.WithDescription("Time from a task's insert to the start of its first attempt."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(c.durations...))
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, err
	}
	return func(next queue.TaskAction) queue.TaskAction {
		return queue.TaskActionFunc(func(task queue.Task) (res queue.TaskResult, msg queue.TaskMessage) {
			name := attribute.String(attrName, task.Name)
			start := time.Now()
			if task.Attempt <= 1 && !task.Created.IsZero() {
				delay.Record(context.Background(), max(start.Sub(task.Created), 0).Seconds(), metric.WithAttributes(name))
			}
			result := "panic"
			defer func() {
				set := metric.WithAttributeSet(attribute.NewSet(name, attribute.String(attrResult, result)))
				duration.Record(context.Background(), time.Since(start).Seconds(), set)
				finished.Add(context.Background(), 1, set)
			}()
			res, msg = next.Do(task)
			result = resultLabel(res)
			return res, msg
		})
	}, nil
}

// resultLabel names a result in the metrics.
func resultLabel(r queue.TaskResult) string {
	switch r {
	case queue.TaskResultSuccess:
		return "success"
	case queue.TaskResultRetryFailure:
		return "retry"
	case queue.TaskResultPermanentFailure:
		return "error"
	}
	return "unknown"
}
