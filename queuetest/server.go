// Package queuetest gives tests (esync's and its users') a real PostgreSQL:
// one server per process, one fresh database per test.
//
// The server comes from the first source that works:
//
//  1. DATABASE_URL, if set (the role needs CREATEDB);
//  2. a Docker engine, through github.com/ory/dockertest/v3, if one answers;
//  3. a throwaway cluster made with the local PostgreSQL binaries (initdb and
//     postgres from PATH or /usr/lib/postgresql/*/bin), listening on a unix
//     socket in a temporary directory that is removed when the process
//     exits, however it exits. As root, the cluster runs as the postgres user.
//
// With none of them, tests are skipped with a message saying what to install;
// ESYNC_REQUIRE_PG=1 turns the skip into a failure.
//
// A test may also start a server of its own from the local binaries:
// NewServer (one it can stop and start), NewPooledServer (behind a PgBouncer
// in transaction mode) and NewTLSServer (TCP over TLS only, with a
// throwaway CA for sslmode=verify-full).
//
// The servers the harness starts trade durability for speed (fsync and
// full_page_writes off) unless StartDurable starts them, for measurements
// that must pay what a commit costs in production.
package queuetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"
)

// RequireEnv names the variable that turns a missing PostgreSQL from a skip
// into a test failure.
const RequireEnv = "ESYNC_REQUIRE_PG"

// InstallHint says how to give the harness a PostgreSQL.
const InstallHint = "no PostgreSQL available: set DATABASE_URL, start a Docker engine, " +
	"or install the server binaries (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql)"

// Server is a running PostgreSQL that can hand out fresh databases.
type Server struct {
	// Source says where the server came from: "env", "docker" or "local".
	Source string
	// RootCert is the file of the throwaway CA that signed the server's
	// certificate (NewTLSServer); empty when TLS is off. DSN names it as
	// sslrootcert already.
	RootCert string

	dsnFor      func(dbname string) string
	adminDSNFor func(dbname string) string // the harness's own, direct connection; nil: dsnFor
	password    string                     // set on the postgres role once the server is up
	admin       *sql.DB
	stop        func() error
	control     func(ctx context.Context, cmd string) error // "stop" or "start"; nil when the server is not the harness's own
}

// Start returns a server from the first source that works (see the package
// doc). A server the harness starts runs with fsync, synchronous_commit and
// full_page_writes off: fast, and a crash may lose anything. Close it when
// done. Tests should use NewDSN, NewDB or NewDriver, which share one server
// per process.
func Start(ctx context.Context) (*Server, error) { return start(ctx, false) }

// StartDurable is Start for measurements that must pay what a durable
// commit costs in production: a server the harness starts (Docker or the
// local binaries) runs with fsync, synchronous_commit and full_page_writes
// on, PostgreSQL's defaults. DATABASE_URL's server is used as it is.
func StartDurable(ctx context.Context) (*Server, error) { return start(ctx, true) }

// start returns a server from the first source that works; durable says
// how a server the harness starts is set up.
func start(ctx context.Context, durable bool) (*Server, error) {
	var s *Server
	var errs []string
	if env := os.Getenv("DATABASE_URL"); env != "" {
		s = &Server{Source: "env", dsnFor: func(db string) string { return withDBName(env, db) }, stop: func() error { return nil }}
	} else if d, err := startDocker(ctx, durable); err == nil {
		s = d
	} else {
		errs = append(errs, "docker: "+err.Error())
		l, err := startLocal(ctx, localOptions{durable: durable, fsync: durable})
		if err != nil {
			errs = append(errs, "local binaries: "+err.Error())
			return nil, fmt.Errorf("%s (%s)", InstallHint, strings.Join(errs, "; "))
		}
		s = l
	}
	admin, err := openAdmin(ctx, s)
	if err != nil {
		s.stop()
		return nil, err
	}
	s.admin = admin
	return s, nil
}

// openAdmin opens the connection the harness manages databases with.
func openAdmin(ctx context.Context, s *Server) (*sql.DB, error) {
	admin, err := sql.Open("postgres", s.DirectDSN("postgres"))
	if err == nil {
		err = waitReady(ctx, admin)
	}
	if err == nil && s.password != "" {
		_, err = admin.ExecContext(ctx, "ALTER ROLE postgres PASSWORD "+pq.QuoteLiteral(s.password))
	}
	if err != nil {
		if admin != nil {
			admin.Close()
		}
		return nil, fmt.Errorf("queuetest: %s server not ready: %w", s.Source, err)
	}
	admin.SetMaxOpenConns(4)
	return admin, nil
}

// DSN returns a connection string for the named database on the server:
// through the PgBouncer of NewPooledServer, over verified TLS on
// NewTLSServer.
func (s *Server) DSN(dbname string) string { return s.dsnFor(dbname) }

// DirectDSN returns a connection string for the named database that
// reaches PostgreSQL itself, not the PgBouncer in front of it (the same as
// DSN on a server without one): what LISTEN needs behind a pooler
// (queue.WithListenDSN). On a TLS server it is the unix socket.
func (s *Server) DirectDSN(dbname string) string {
	if s.adminDSNFor != nil {
		return s.adminDSNFor(dbname)
	}
	return s.dsnFor(dbname)
}

// CreateDatabase creates a database with a fresh random name and returns its
// name and connection string.
func (s *Server) CreateDatabase(ctx context.Context) (name, dsn string, err error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	name = "esync_" + hex.EncodeToString(b[:])
	// CREATE DATABASE copies template1; concurrent copies of one template
	// can fail with "source database is being accessed", so retry briefly.
	for attempt := 0; ; attempt++ {
		_, err = s.admin.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(name))
		if err == nil || attempt == 20 || !strings.Contains(err.Error(), "being accessed") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return "", "", fmt.Errorf("queuetest: create database: %w", err)
	}
	return name, s.dsnFor(name), nil
}

// DropDatabase drops a database made by CreateDatabase, closing its
// connections first.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	_, err := s.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pq.QuoteIdentifier(name)+" WITH (FORCE)")
	return err
}

// Close stops the server if the harness started it.
func (s *Server) Close() error {
	if s.admin != nil {
		s.admin.Close()
	}
	return s.stop()
}

func waitReady(ctx context.Context, db *sql.DB) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		err := db.PingContext(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// withDBName points a URL or key=value connection string at another
// database.
func withDBName(dsn, db string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + db
		return u.String()
	}
	return dsn + " dbname=" + db
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
)

// Shared returns the process's one server, starting it on first use; the
// harness stops it when the process exits. Example functions, which have no
// *testing.T, can create their databases on it.
func Shared() (*Server, error) { return sharedServer() }

// sharedServer starts the process's one server on first use.
func sharedServer() (*Server, error) {
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		shared, sharedErr = Start(ctx)
	})
	return shared, sharedErr
}
