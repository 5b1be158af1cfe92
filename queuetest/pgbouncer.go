package queuetest

import (
	"context"
	"testing"
)

// NewPooledServer starts a PostgreSQL of the test's own with a PgBouncer in
// front of it in transaction mode, as most production servers sit: a
// client's server connection is handed to other clients between its
// transactions, so anything that relies on a session (session advisory
// locks, prepared statements, SET, temporary tables, LISTEN) breaks. DSN and
// NewDSN point at the PgBouncer (on 127.0.0.1, a free port); DirectDSN
// reaches PostgreSQL itself, e.g. for LISTEN (queue.WithListenDSN). Stop and
// Start stop and start PostgreSQL, not the PgBouncer. Both are removed when
// the test ends.
//
// It needs the local PostgreSQL binaries and PgBouncer (PGBOUNCER, PATH or
// /usr/sbin/pgbouncer; Debian: apt-get install pgbouncer); without them the
// test is skipped, or fails when ESYNC_REQUIRE_PG=1.
func NewPooledServer(t testing.TB) *Server {
	t.Helper()
	return newOwnServer(t, localOptions{durable: true, pgbouncer: true})
}

// NewTLSServer starts a PostgreSQL of the test's own that takes TCP
// connections on 127.0.0.1 (a free port) only over TLS and with a password,
// as managed servers do. Its certificate, for localhost, 127.0.0.1 and ::1,
// is signed by a throwaway CA whose certificate is in RootCert. DSN and
// NewDSN give sslmode=verify-full connection strings to localhost that name
// it as sslrootcert; for sslmode=require, replace the sslmode. It is removed
// when the test ends.
func NewTLSServer(t testing.TB) *Server {
	t.Helper()
	return newOwnServer(t, localOptions{durable: true, tls: true})
}

// StartPooled is NewPooledServer for a whole suite (TestMain, a
// sync.Once): it returns the server or why it could not start; Close it
// when done (it is removed when the process exits in any case).
func StartPooled(ctx context.Context) (*Server, error) {
	return startOwn(ctx, localOptions{durable: true, pgbouncer: true})
}

// StartTLS is NewTLSServer for a whole suite, as StartPooled.
func StartTLS(ctx context.Context) (*Server, error) {
	return startOwn(ctx, localOptions{durable: true, tls: true})
}
