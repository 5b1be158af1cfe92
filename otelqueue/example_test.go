package otelqueue_test

import (
	"context"
	"fmt"
	"log"

	"github.com/prometheus/client_golang/prometheus"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/esync/queue"
	"github.com/esync/queue/otelqueue"
	"github.com/esync/queue/queuetest"
)

// A program records the queue's metrics with the OpenTelemetry SDK and
// exports them to Prometheus; serving them is then
// http.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{})).
func Example() {
	ctx := context.Background()
	pg, done := exampleDriver(ctx)
	defer done()

	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		log.Fatal(err)
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer provider.Shutdown(ctx)
	opt := otelqueue.WithMeterProvider(provider) // or otel.SetMeterProvider(provider)

	driver, err := otelqueue.WrapDriver(pg, opt)
	if err != nil {
		log.Fatal(err)
	}
	mw, err := otelqueue.Middleware(opt)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := otelqueue.ObserveQueue(pg, opt); err != nil {
		log.Fatal(err)
	}
	sm := queue.NewSyncManager(driver)
	sm.Use(mw)
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
		return queue.TaskResultSuccess, ""
	}), "greet")
	tm := queue.NewTaskManager(driver)
	tm.AddTask("greet", "user:1", map[string]any{})
	tm.AddTask("greet", "user:2", map[string]any{})
	if err := sm.RunUntilDone(ctx); err != nil {
		log.Fatal(err)
	}

	families, err := registry.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "esync_task_finished_total" {
			for _, m := range f.GetMetric() {
				fmt.Println(f.GetName(), labels(m.GetLabel()), m.GetCounter().GetValue())
			}
		}
	}
	// Output:
	// esync_task_finished_total result=success task_name=greet 2
}

// labels shows the labels of a sample that are not the scope's.
func labels[L interface {
	GetName() string
	GetValue() string
}](ls []L) string {
	out := ""
	for _, l := range ls {
		if len(l.GetName()) > 5 && l.GetName()[:5] == "otel_" {
			continue
		}
		if out != "" {
			out += " "
		}
		out += l.GetName() + "=" + l.GetValue()
	}
	return out
}

// exampleDriver opens and migrates a queue on a fresh database of the
// test process's PostgreSQL; done closes and drops it.
func exampleDriver(ctx context.Context) (*queue.PostgresDriver, func()) {
	srv, err := queuetest.Shared()
	if err != nil {
		log.Fatal(err)
	}
	name, dsn, err := srv.CreateDatabase(ctx)
	if err != nil {
		log.Fatal(err)
	}
	d, err := queue.OpenPostgres(dsn)
	if err != nil {
		log.Fatal(err)
	}
	if err := d.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	return d, func() { d.Close(); srv.DropDatabase(context.Background(), name) }
}
