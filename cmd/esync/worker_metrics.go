package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/esync/queue"
	"github.com/esync/queue/otelqueue"
)

// metricsServer serves the worker's metrics in Prometheus format at
// /metrics, through the OpenTelemetry Prometheus exporter.
type metricsServer struct {
	provider *sdkmetric.MeterProvider
	server   *http.Server
	listener net.Listener
	gauges   metric.Registration
	done     chan error
}

// startMetrics listens on addr and serves the metrics that the returned
// server's provider records.
func startMetrics(addr string) (*metricsServer, error) {
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	s := &metricsServer{
		provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter)),
		server:   &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		listener: ln,
		done:     make(chan error, 1),
	}
	go func() { s.done <- s.server.Serve(ln) }()
	return s, nil
}

// URL is where the metrics are served.
func (s *metricsServer) URL() string { return "http://" + s.listener.Addr().String() + "/metrics" }

// instrument wraps the driver and returns the middleware that record the
// metrics of the queue and its tasks.
func (s *metricsServer) instrument(d *queue.PostgresDriver) (*otelqueue.Driver, queue.Middleware, error) {
	opt := otelqueue.WithMeterProvider(s.provider)
	wrapped, err := otelqueue.WrapDriver(d, opt)
	if err != nil {
		return nil, nil, err
	}
	mw, err := otelqueue.Middleware(opt)
	if err != nil {
		return nil, nil, err
	}
	if s.gauges, err = otelqueue.ObserveQueue(d, opt); err != nil {
		return nil, nil, err
	}
	return wrapped, mw, nil
}

// stop ends serving, waiting a moment for scrapes in progress.
func (s *metricsServer) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var errs []error
	if s.gauges != nil {
		errs = append(errs, s.gauges.Unregister())
	}
	errs = append(errs, s.server.Shutdown(ctx))
	if err := <-s.done; !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, err)
	}
	errs = append(errs, s.provider.Shutdown(ctx))
	return errors.Join(errs...)
}
