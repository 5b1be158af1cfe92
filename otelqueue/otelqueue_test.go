package otelqueue_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/esync/queue"
	"github.com/esync/queue/otelqueue"
	"github.com/esync/queue/queuetest"
)

// meters is an SDK meter provider with a manual reader: the metrics as an
// exporter would see them.
type meters struct {
	t        *testing.T
	provider *sdkmetric.MeterProvider
	reader   *sdkmetric.ManualReader
}

func newMeters(t *testing.T) *meters {
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	return &meters{t: t, provider: mp, reader: r}
}

func (m *meters) option() otelqueue.Option { return otelqueue.WithMeterProvider(m.provider) }

// collect reads every metric, keyed by name.
func (m *meters) collect() map[string]metricdata.Aggregation {
	m.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := m.reader.Collect(context.Background(), &rm); err != nil {
		m.t.Fatalf("collect: %v", err)
	}
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, md := range sm.Metrics {
			out[md.Name] = md.Data
		}
	}
	return out
}

// matches reports whether set has every attribute of want.
func matches(set attribute.Set, want map[string]string) bool {
	for k, v := range want {
		got, ok := set.Value(attribute.Key(k))
		if !ok || got.Emit() != v {
			return false
		}
	}
	return true
}

// sum adds the points of a counter or gauge whose attributes match want.
func sum(t *testing.T, data map[string]metricdata.Aggregation, name string, want map[string]string) float64 {
	t.Helper()
	total := 0.0
	switch d := data[name].(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			if matches(p.Attributes, want) {
				total += float64(p.Value)
			}
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			if matches(p.Attributes, want) {
				total += float64(p.Value)
			}
		}
	case metricdata.Gauge[float64]:
		for _, p := range d.DataPoints {
			if matches(p.Attributes, want) {
				total += p.Value
			}
		}
	case nil:
	default:
		t.Fatalf("%s: unexpected aggregation %T", name, d)
	}
	return total
}

// histogramCount counts the observations of a histogram whose attributes
// match want.
func histogramCount(t *testing.T, data map[string]metricdata.Aggregation, name string, want map[string]string) uint64 {
	t.Helper()
	h, ok := data[name].(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s: no histogram (got %T)", name, data[name])
	}
	var n uint64
	for _, p := range h.DataPoints {
		if matches(p.Attributes, want) {
			n += p.Count
		}
	}
	return n
}

// A manager over the wrapped driver starts (every capability it needs is
// forwarded, an exclusive stream's lock included) and runs tasks; the
// middleware and the driver record what happened.
func TestRunMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pg := queuetest.NewDriver(t)
	m := newMeters(t)
	driver, err := otelqueue.WrapDriver(pg, m.option())
	if err != nil {
		t.Fatal(err)
	}
	mw, err := otelqueue.Middleware(m.option())
	if err != nil {
		t.Fatal(err)
	}
	sm := queue.NewSyncManager(driver, queue.WithPollInterval(20*time.Millisecond))
	sm.Use(mw)
	if err := sm.ConfigureStream("crm", queue.Exclusive(), queue.WithConcurrency(2)); err != nil {
		t.Fatal(err)
	}
	var flakyRuns atomic.Int32
	handlers := map[string]queue.TaskActionFunc{
		"ok":   func(queue.Task) (queue.TaskResult, queue.TaskMessage) { return queue.TaskResultSuccess, "" },
		"fail": func(queue.Task) (queue.TaskResult, queue.TaskMessage) { return queue.TaskResultPermanentFailure, "no" },
		"flaky": func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
			if flakyRuns.Add(1) == 1 {
				return queue.TaskResultRetryFailure, "later"
			}
			return queue.TaskResultSuccess, ""
		},
		"boom": func(queue.Task) (queue.TaskResult, queue.TaskMessage) { panic("boom") },
	}
	for name, h := range handlers {
		if err := sm.RegisterTaskHandler(h, name, queue.InStream("crm"),
			queue.WithRetryPolicy(queue.ConstantBackoff(time.Millisecond)), queue.WithTaskMaxAttempts(2)); err != nil {
			t.Fatal(err)
		}
	}
	tm := queue.NewTaskManager(driver)
	for i, name := range []string{"ok", "ok", "ok", "fail", "flaky"} {
		if _, err := tm.Add(ctx, name, name+":"+string(rune('a'+i)), map[string]any{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tm.Add(ctx, "boom", "boom:1", map[string]any{}, queue.WithMaxAttempts(1)); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := sm.RunUntilDone(runCtx); err != nil {
		t.Fatal(err)
	}
	counts, err := tm.CountByState(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if counts[queue.TaskDone] != 4 || counts[queue.TaskFailed] != 2 {
		t.Fatalf("states %v, want 4 DONE and 2 FAILED", counts)
	}

	data := m.collect()
	for _, c := range []struct {
		name, result string
		want         float64
	}{{"ok", "success", 3}, {"fail", "error", 1}, {"flaky", "retry", 1}, {"flaky", "success", 1}, {"boom", "panic", 1}} {
		got := sum(t, data, "esync.task.finished", map[string]string{"task.name": c.name, "result": c.result})
		if got != c.want {
			t.Errorf("finished{%s,%s} = %v, want %v", c.name, c.result, got, c.want)
		}
	}
	if n := histogramCount(t, data, "esync.task.duration", nil); n != 7 {
		t.Errorf("duration histogram has %d runs, want 7", n)
	}
	// The retry of flaky is not a start delay: one per task.
	if n := histogramCount(t, data, "esync.task.start_delay", nil); n != 6 {
		t.Errorf("start delay histogram has %d observations, want 6 (first attempts)", n)
	}
	if n := sum(t, data, "esync.claim.tasks", nil); n != 7 {
		t.Errorf("claimed %v tasks, want 7", n)
	}
	if n := histogramCount(t, data, "esync.claim.duration", map[string]string{"claimed": "true"}); n == 0 {
		t.Error("no claim recorded in esync.claim.duration")
	}
	if n := sum(t, data, "esync.driver.errors", nil); n != 0 {
		t.Errorf("%v driver errors on a healthy database", n)
	}
}

// A run longer than a few lease extensions has them counted.
func TestLeaseExtensions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMeters(t)
	driver, err := otelqueue.WrapDriver(queuetest.NewDriver(t), m.option())
	if err != nil {
		t.Fatal(err)
	}
	sm := queue.NewSyncManager(driver, queue.WithLease(300*time.Millisecond), queue.WithPollInterval(20*time.Millisecond))
	// The action runs until the metrics show its lease extended twice.
	wait := func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if sum(t, m.collect(), "esync.lease.extended", nil) >= 2 {
				return queue.TaskResultSuccess, ""
			}
			time.Sleep(10 * time.Millisecond)
		}
		return queue.TaskResultPermanentFailure, "no lease extension recorded"
	}
	if err := sm.RegisterTaskHandler(queue.TaskActionFunc(wait), "long"); err != nil {
		t.Fatal(err)
	}
	tm := queue.NewTaskManager(driver)
	id, err := tm.Add(ctx, "long", "long:1", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := sm.RunOnce(runCtx); err != nil {
		t.Fatal(err)
	}
	task, err := tm.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if task.State != queue.TaskDone {
		t.Fatalf("task %s: %s", task.State, task.Message)
	}
}

// Rescued tasks, lost leases and failed calls are counted.
func TestRescuesLostLeasesAndErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMeters(t)
	driver, err := otelqueue.WrapDriver(queuetest.NewDriver(t), m.option())
	if err != nil {
		t.Fatal(err)
	}
	tm := queue.NewTaskManager(driver)
	if _, err := tm.Add(ctx, "job", "job:1", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	claimed, err := driver.Claim(ctx, queue.ClaimParams{Names: []string{"job"}, Limit: 1, Lease: 5 * time.Millisecond})
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v, %d tasks", err, len(claimed))
	}
	// Wait for the lease to expire, as the database sees it.
	var rescued int
	for deadline := time.Now().Add(30 * time.Second); rescued == 0 && time.Now().Before(deadline); {
		if rescued, err = driver.RescueExpired(ctx, queue.RescueParams{}); err != nil {
			t.Fatal(err)
		}
	}
	if rescued != 1 {
		t.Fatalf("rescued %d tasks, want 1", rescued)
	}
	// The stale holder's finish and extension are lost.
	if _, err := driver.ExtendLeases(ctx, []queue.Lease{claimed[0].Lease}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := driver.Finish(ctx, []queue.Completion{{Lease: claimed[0].Lease, State: queue.TaskDone}}); err != nil {
		t.Fatal(err)
	}

	closedPG := queuetest.NewDriver(t)
	closed, err := otelqueue.WrapDriver(closedPG, m.option())
	if err != nil {
		t.Fatal(err)
	}
	closedPG.Close()
	if _, err := closed.Claim(ctx, queue.ClaimParams{Names: []string{"job"}, Limit: 1, Lease: time.Second}); err == nil {
		t.Fatal("claim on a closed driver succeeded")
	}
	if _, err := closed.ExtendLeases(ctx, []queue.Lease{claimed[0].Lease}, time.Second); err == nil {
		t.Fatal("extend on a closed driver succeeded")
	}

	data := m.collect()
	checks := []struct {
		metric string
		attrs  map[string]string
		want   float64
	}{
		{"esync.rescue.tasks", nil, 1},
		{"esync.lease.lost", map[string]string{"call": "extend_leases"}, 1},
		{"esync.lease.lost", map[string]string{"call": "finish"}, 1},
		{"esync.lease.extended", nil, 0},
		{"esync.driver.errors", map[string]string{"call": "claim"}, 1},
		{"esync.driver.errors", map[string]string{"call": "extend_leases"}, 1},
		{"esync.claim.tasks", nil, 1},
	}
	for _, c := range checks {
		if got := sum(t, data, c.metric, c.attrs); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.metric, c.attrs, got, c.want)
		}
	}
}

// countingReader counts the readings of a real driver.
type countingReader struct {
	otelqueue.StatsReader
	reads atomic.Int32
	fail  atomic.Bool
}

func (c *countingReader) QueueStats(ctx context.Context) ([]queue.QueueStat, error) {
	c.reads.Add(1)
	if c.fail.Load() {
		return nil, errors.New("stats unavailable")
	}
	return c.StatsReader.QueueStats(ctx)
}

// The depth gauges match the queue's counts, the oldest due task's wait is
// reported, and collections within the cache's age share one reading.
func TestQueueGauges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pg := queuetest.NewDriver(t)
	tm := queue.NewTaskManager(pg)
	for i := range 3 {
		if _, err := tm.Add(ctx, "a", "a:"+string(rune('0'+i)), map[string]any{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if _, err := tm.Add(ctx, "b", "b:"+string(rune('0'+i)), map[string]any{}, queue.WithDelay(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tm.Add(ctx, "c", "c:1", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	if claimed, err := pg.Claim(ctx, queue.ClaimParams{Names: []string{"a"}, Limit: 1, Lease: time.Minute}); err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v, %d", err, len(claimed))
	}
	if claimed, err := pg.Claim(ctx, queue.ClaimParams{Names: []string{"c"}, Limit: 1, Lease: time.Minute}); err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v, %d", err, len(claimed))
	}
	if _, err := pg.Finish(ctx, nil); err != nil {
		t.Fatal(err)
	}

	m := newMeters(t)
	reader := &countingReader{StatsReader: pg}
	if _, err := otelqueue.ObserveQueue(reader, m.option(), otelqueue.WithStatsMaxAge(time.Hour)); err != nil {
		t.Fatal(err)
	}
	data := m.collect()
	for _, name := range []string{"a", "b", "c"} {
		counts, err := tm.CountByState(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, state := range []queue.TaskState{queue.TaskReady, queue.TaskRetry, queue.TaskInProgress} {
			got := sum(t, data, "esync.queue.depth", map[string]string{"task.name": name, "state": string(state)})
			if got != float64(counts[state]) {
				t.Errorf("depth{%s,%s} = %v, queue has %d", name, state, got, counts[state])
			}
		}
	}
	if got := sum(t, data, "esync.queue.depth", map[string]string{"task.name": "a", "state": "READY"}); got != 2 {
		t.Errorf("depth{a,READY} = %v, want 2", got)
	}
	if got := sum(t, data, "esync.queue.oldest_due_age", map[string]string{"task.name": "a"}); got <= 0 {
		t.Errorf("oldest due age of a = %v, want > 0 (its tasks are due)", got)
	}
	if got := sum(t, data, "esync.queue.oldest_due_age", map[string]string{"task.name": "b"}); got != 0 {
		t.Errorf("oldest due age of b = %v, want 0 (due in an hour)", got)
	}
	if got := sum(t, data, "esync.queue.oldest_due_age", map[string]string{"task.name": "c"}); got != 0 {
		t.Errorf("oldest due age of c = %v, want 0 (only running)", got)
	}

	// A scrape storm within the cache's age reads the queue once.
	for range 10 {
		m.collect()
	}
	if n := reader.reads.Load(); n != 1 {
		t.Errorf("%d readings for 11 collections within the cache's age, want 1", n)
	}

	// Without a cache every collection reads, and sees new tasks; a
	// failed reading is reported and counted.
	m2 := newMeters(t)
	fresh := &countingReader{StatsReader: pg}
	if _, err := otelqueue.ObserveQueue(fresh, m2.option(), otelqueue.WithStatsMaxAge(0)); err != nil {
		t.Fatal(err)
	}
	m2.collect()
	if _, err := tm.Add(ctx, "a", "a:9", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	if got := sum(t, m2.collect(), "esync.queue.depth", map[string]string{"task.name": "a", "state": "READY"}); got != 3 {
		t.Errorf("depth{a,READY} after an add = %v, want 3", got)
	}
	if n := fresh.reads.Load(); n != 2 {
		t.Errorf("%d readings for 2 uncached collections", n)
	}
	fresh.fail.Store(true)
	var rm metricdata.ResourceMetrics
	if err := m2.reader.Collect(ctx, &rm); err == nil {
		t.Error("a failed reading was not reported to the collection")
	}
	fresh.fail.Store(false)
	if got := sum(t, m2.collect(), "esync.driver.errors", map[string]string{"call": "queue_stats"}); got != 1 {
		t.Errorf("queue_stats errors = %v, want 1", got)
	}
}

// Bad options are refused.
func TestOptions(t *testing.T) {
	t.Parallel()
	if _, err := otelqueue.Middleware(otelqueue.WithStatsMaxAge(-time.Second)); err == nil {
		t.Error("negative stats age accepted")
	}
	if _, err := otelqueue.Middleware(otelqueue.WithDurationBuckets(1, 1)); err == nil {
		t.Error("buckets that do not increase accepted")
	}
	if _, err := otelqueue.WrapDriver(nil); err == nil {
		t.Error("nil driver accepted")
	}
	if _, err := otelqueue.ObserveQueue(nil); err == nil {
		t.Error("nil reader accepted")
	}
}
