package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-multierror"
)

// service is the one shape of every background part of a running
// SyncManager: stream loops, the lease keeper, the result writer,
// maintenance, the listener and the scheduler. start backgrounds the service
// and returns start-up errors only; it must not wait for the database. stop
// ends the service and waits until it has, or until ctx is done; it is safe
// to call once start has returned, whatever start returned.
type service interface {
	start(ctx context.Context) error
	stop(ctx context.Context) error
}

// errStopped is the cause given to a service's context when it is stopped,
// so that a controlled stop can be told from a failure.
var errStopped = errors.New("queue: service stopped")

// loop is the base of services that are one function running until stopped:
// run gets a context that ends, with errStopped as cause, when stop is
// called.
type loop struct {
	name   string
	run    func(ctx context.Context)
	cancel context.CancelCauseFunc
	done   chan struct{}
}

func (l *loop) start(ctx context.Context) error {
	var runCtx context.Context
	runCtx, l.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
	l.done = make(chan struct{})
	go func() {
		defer close(l.done)
		l.run(runCtx)
	}()
	return nil
}

func (l *loop) stop(ctx context.Context) error {
	if l.done == nil {
		return nil
	}
	l.cancel(errStopped)
	return l.wait(ctx)
}

// wait waits for run to return, or for ctx to end.
func (l *loop) wait(ctx context.Context) error {
	if l.done == nil {
		return nil
	}
	return waitStopped(ctx, l.done, l.name)
}

// exitGrace is how long a stop whose deadline has already passed still
// waits for a cancelled goroutine to return: long enough for one that
// returns at once, far too short for one that is stuck.
const exitGrace = 10 * time.Millisecond

// waitStopped waits until done is closed or ctx ends (then at most
// exitGrace more), and names what did not stop.
func waitStopped(ctx context.Context, done <-chan struct{}, what string) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	select {
	case <-done:
		return nil
	case <-time.After(exitGrace):
		return fmt.Errorf("%s did not stop in time: %w", what, context.Cause(ctx))
	}
}

// supervisor starts services in order and stops them in reverse. The
// services that start work (stream loops, the scheduler, the running
// actions) can be given an earlier deadline than the rest, so that the
// results of the work they stop can still be written.
type supervisor struct {
	services   []service
	startsWork []bool
	started    int
}

// add appends services, to be started after the ones added before.
func (s *supervisor) add(services ...service) {
	for _, svc := range services {
		s.services = append(s.services, svc)
		s.startsWork = append(s.startsWork, false)
	}
}

// addWork appends services that start work: stopAll stops them within its
// workCtx.
func (s *supervisor) addWork(services ...service) {
	s.add(services...)
	for i := len(s.startsWork) - len(services); i < len(s.startsWork); i++ {
		s.startsWork[i] = true
	}
}

// startAll starts every service in order. If one fails, the ones started
// before it are stopped again and its error is returned.
func (s *supervisor) startAll(ctx context.Context) error {
	for _, svc := range s.services[s.started:] {
		if err := svc.start(ctx); err != nil {
			return multierror.Append(err, s.stopAll(ctx, ctx)).ErrorOrNil()
		}
		s.started++
	}
	return nil
}

// stopAll stops the started services in reverse order, those that start
// work within workCtx and the others within ctx, and returns every error.
func (s *supervisor) stopAll(ctx, workCtx context.Context) error {
	var errs *multierror.Error
	for ; s.started > 0; s.started-- {
		i := s.started - 1
		stopCtx := ctx
		if s.startsWork[i] {
			stopCtx = workCtx
		}
		if err := s.services[i].stop(stopCtx); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	return errs.ErrorOrNil()
}
