package otelqueue

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/esync/queue"
)

// StatsReader reads the depth of a queue; *queue.PostgresDriver and
// *Driver are StatsReaders.
type StatsReader interface {
	QueueStats(ctx context.Context) ([]queue.QueueStat, error)
}

// statsTimeout bounds one reading of the queue during a collection.
const statsTimeout = 5 * time.Second

// ObserveQueue registers the observable gauges esync.queue.depth (tasks per
// name and unfinished state) and esync.queue.oldest_due_age (seconds the
// oldest due task of each name has waited since it became due; 0 when none
// is due). One collection reads the queue once, with one grouped query, and
// a reading younger than WithStatsMaxAge is reused. A reading that fails is
// counted in esync.driver.errors (call "queue_stats") and reported to the
// collection. Unregister the returned registration to stop observing.
func ObserveQueue(r StatsReader, opts ...Option) (metric.Registration, error) {
	if r == nil {
		return nil, errors.New("otelqueue: ObserveQueue: nil reader")
	}
	c, meter, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	depth, err1 := meter.Int64ObservableGauge("esync.queue.depth",
		metric.WithDescription("Unfinished tasks, by task name and state."), metric.WithUnit("{task}"))
	age, err2 := meter.Float64ObservableGauge("esync.queue.oldest_due_age",
		metric.WithDescription("How long the oldest due task of a name has waited since it became due."), metric.WithUnit("s"))
	errs, err3 := meter.Int64Counter("esync.driver.errors",
		metric.WithDescription("Failed driver calls, by call."), metric.WithUnit("{error}"))
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, err
	}
	cache := &statsCache{read: r.QueueStats, maxAge: c.statsMaxAge}
	return meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		stats, err := cache.get(ctx)
		if err != nil {
			errs.Add(ctx, 1, metric.WithAttributes(attribute.String(attrCall, "queue_stats")))
			return err
		}
		oldest := map[string]time.Duration{}
		for _, s := range stats {
			o.ObserveInt64(depth, int64(s.Count), metric.WithAttributes(
				attribute.String(attrName, s.Name), attribute.String(attrState, string(s.State))))
			oldest[s.Name] = max(oldest[s.Name], s.OldestDueWait)
		}
		for name, wait := range oldest {
			o.ObserveFloat64(age, wait.Seconds(), metric.WithAttributes(attribute.String(attrName, name)))
		}
		return nil
	}, depth, age)
}

// statsCache keeps the last reading of the queue for maxAge. Collections
// that arrive together wait for one reading instead of each making one.
type statsCache struct {
	read   func(context.Context) ([]queue.QueueStat, error)
	maxAge time.Duration

	mu    sync.Mutex
	stats []queue.QueueStat
	at    time.Time
}

// get returns a reading no older than maxAge.
func (c *statsCache) get(ctx context.Context) ([]queue.QueueStat, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < c.maxAge {
		return c.stats, nil
	}
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	stats, err := c.read(ctx)
	if err != nil {
		return nil, err
	}
	c.stats, c.at = stats, time.Now()
	return stats, nil
}
