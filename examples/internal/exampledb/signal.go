package exampledb

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
)

// SignalContext is cancelled by the first SIGINT or SIGTERM, so that an
// example stops, closes and drops its place; a second signal ends the
// program at once.
func SignalContext() context.Context {
	ctx, cancel := context.WithCancelCause(context.Background())
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-signals
		signal.Stop(signals)
		cancel(fmt.Errorf("received %v", sig))
	}()
	return ctx
}

// Exit ends an example's main: status 130 when a signal cancelled ctx
// (the place is dropped by then), 1 with the error logged on another
// error, 0 otherwise.
func Exit(ctx context.Context, err error) {
	switch {
	case err != nil && ctx.Err() != nil:
		fmt.Fprintf(os.Stderr, "interrupted (%v)\n", context.Cause(ctx))
		os.Exit(130)
	case err != nil:
		log.Fatal(err)
	}
}
