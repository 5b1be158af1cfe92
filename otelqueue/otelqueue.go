// Package otelqueue records OpenTelemetry metrics of an esync queue, as
// River's otelriver does for River. It uses the OpenTelemetry metric API
// only: the program brings the SDK and an exporter (Prometheus, OTLP).
//
//	mw, err := otelqueue.Middleware()           // tasks finished, run time, start delay
//	driver, err := otelqueue.WrapDriver(pg)     // claims, leases, rescues, errors
//	reg, err := otelqueue.ObserveQueue(pg)      // depth and oldest due task, per scrape
//	manager := queue.NewSyncManager(driver)
//	manager.Use(mw)
//
// Every constructor takes the same options; without WithMeterProvider the
// global provider (otel.GetMeterProvider) is used.
//
// # Instruments
//
//	esync.task.finished        counter    task.name, result (success, retry, error, panic)
//	esync.task.duration        histogram  seconds; task.name, result
//	esync.task.start_delay     histogram  seconds from insert to first start; task.name
//	esync.claim.tasks          counter    tasks claimed
//	esync.claim.duration       histogram  seconds per claim call; claimed (true, false)
//	esync.lease.extended       counter    leases extended
//	esync.lease.lost           counter    leases found lost on extend or finish
//	esync.rescue.tasks         counter    expired tasks returned to the queue
//	esync.driver.errors        counter    call (claim, finish, extend_leases, ...)
//	esync.queue.depth          gauge      task.name, state (READY, RETRY, IN PROGRESS)
//	esync.queue.oldest_due_age gauge      seconds the oldest due task has waited; task.name
//
// The gauges are read with one grouped query per collection (see
// queue.PostgresDriver.QueueStats), and the answer is kept for
// WithStatsMaxAge (default 2s) so that many scrapes at once cost one query.
package otelqueue

import (
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
)

// ScopeName is the instrumentation scope of the instruments.
const ScopeName = "github.com/esync/queue/otelqueue"

// DefaultStatsMaxAge is how long a reading of the queue depth is reused
// when WithStatsMaxAge is not given.
const DefaultStatsMaxAge = 2 * time.Second

// Option configures Middleware, WrapDriver and ObserveQueue.
type Option func(*config)

type config struct {
	provider    metric.MeterProvider
	statsMaxAge time.Duration
	durations   []float64
}

// WithMeterProvider records through mp instead of the global provider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.provider = mp }
}

// WithStatsMaxAge sets how long ObserveQueue reuses a reading of the queue
// (default 2s); zero reads on every collection.
func WithStatsMaxAge(d time.Duration) Option {
	return func(c *config) { c.statsMaxAge = d }
}

// WithDurationBuckets sets the bucket boundaries, in seconds, of the
// duration and delay histograms (default: 5ms to 10min).
func WithDurationBuckets(bounds ...float64) Option {
	return func(c *config) { c.durations = append([]float64(nil), bounds...) }
}

// defaultDurationBuckets span a no-op task to a long script.
var defaultDurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

func newConfig(opts []Option) (config, metric.Meter, error) {
	c := config{statsMaxAge: DefaultStatsMaxAge, durations: defaultDurationBuckets}
	for _, opt := range opts {
		opt(&c)
	}
	if c.provider == nil {
		c.provider = otel.GetMeterProvider()
	}
	if c.statsMaxAge < 0 {
		return c, nil, fmt.Errorf("otelqueue: WithStatsMaxAge must not be negative, got %s", c.statsMaxAge)
	}
	for i, b := range c.durations {
		if i > 0 && b <= c.durations[i-1] {
			return c, nil, errors.New("otelqueue: WithDurationBuckets: boundaries must increase")
		}
	}
	return c, c.provider.Meter(ScopeName), nil
}

// Attribute keys.
const (
	attrName   = "task.name"
	attrResult = "result"
	attrState  = "state"
	attrCall   = "call"
)
