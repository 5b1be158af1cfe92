package queuetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/lib/pq"
)

// ErrNoControl is returned by Stop, Start and Restart on a server the
// harness did not start from the local binaries (DATABASE_URL, Docker).
var ErrNoControl = errors.New("queuetest: this server cannot be stopped and started by the harness")

// NewServer starts a PostgreSQL of the test's own from the local binaries,
// which the test may stop, start and restart (fault tests: a database
// outage under load, a crash). Unlike the shared server, its commits
// survive a stop (synchronous_commit is on). It is removed when the test ends. Without
// the binaries the test is skipped (or fails when ESYNC_REQUIRE_PG=1). Use
// the shared server (NewDSN) for everything else: a cluster takes a second
// or two to create.
func NewServer(t testing.TB) *Server {
	t.Helper()
	return newOwnServer(t, localOptions{durable: true})
}

// newOwnServer starts a cluster of the test's own, removed when the test
// ends.
func newOwnServer(t testing.TB, opt localOptions) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := startOwn(ctx, opt)
	if err != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("queuetest: own server: %v (%s is set)", err, RequireEnv)
		}
		t.Skipf("queuetest: own server: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("queuetest: %v", err)
		}
	})
	return s
}

// startOwn starts a cluster from the local binaries and opens the
// harness's connection to it.
func startOwn(ctx context.Context, opt localOptions) (*Server, error) {
	s, err := startLocal(ctx, opt)
	if err != nil {
		return nil, err
	}
	admin, err := openAdmin(ctx, s)
	if err != nil {
		s.stop()
		return nil, err
	}
	s.admin = admin
	return s, nil
}

// NewDSN creates a fresh database on s for the test and returns its
// connection string; it is dropped when the test ends (if the server is up).
func (s *Server) NewDSN(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name, dsn, err := s.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.DropDatabase(ctx, name)
	})
	return dsn
}

// Stop stops the server at once, as a crash would (pg_ctl -m immediate):
// connections break, and nothing is checkpointed.
func (s *Server) Stop(ctx context.Context) error {
	if s.control == nil {
		return ErrNoControl
	}
	return s.control(ctx, "stop")
}

// Start starts a stopped server again and waits until it takes
// connections (after crash recovery).
func (s *Server) Start(ctx context.Context) error {
	if s.control == nil {
		return ErrNoControl
	}
	if err := s.control(ctx, "start"); err != nil {
		return err
	}
	return waitReady(ctx, s.admin)
}

// Restart stops the server at once and starts it again.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(ctx); err != nil {
		return err
	}
	return s.Start(ctx)
}

// TerminateBackends ends every connection to database dbname (all
// databases when empty) but the harness's own, as an administrator's
// pg_terminate_backend would, and reports how many it ended.
func (s *Server) TerminateBackends(ctx context.Context, dbname string) (int, error) {
	var n int
	err := s.admin.QueryRowContext(ctx, `
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' AND ($1 = '' OR datname = $1)`, dbname).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("queuetest: terminate backends of %s: %w", pq.QuoteIdentifier(dbname), err)
	}
	return n, nil
}
