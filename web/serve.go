package web

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/esync/queue"
)

// Serve serves the dashboard of driver on listenAddr ("127.0.0.1:8080")
// until ctx ends, then shuts down, giving requests in flight five seconds.
// It returns nil after a shutdown caused by ctx, or the error that stopped
// it.
func Serve(ctx context.Context, driver *queue.PostgresDriver, listenAddr string, opts ...Option) error {
	h, err := newDashboard(driver, opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return fmt.Errorf("web: listen: %w", err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	h.cfg.logger.Info("esync dashboard: listening", "url", "http://"+ln.Addr().String()+"/", "read_only", h.cfg.readOnly, "basic_auth", h.cfg.auth)
	if h.cfg.onListen != nil {
		h.cfg.onListen(ln.Addr().String())
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("web: serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	if err != nil {
		return fmt.Errorf("web: shut down: %w", err)
	}
	return nil
}
