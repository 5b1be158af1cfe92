// Package exampledb gives each example program a place of its own in
// PostgreSQL, so that running an example never reads or writes a table of
// the user's.
//
// With DATABASE_URL unset, the place is a fresh database on a throwaway
// PostgreSQL (see queuetest), gone when the program exits. With DATABASE_URL
// set, the place is a fresh database the example creates on that server,
// named esync_example_<example>_<random>; when the role may not create
// databases, it is a fresh schema of that name in DATABASE_URL's database,
// holding the example's queue (queue.WithSchema) and its tables (the
// connections' search_path points there). Either is dropped when the
// example ends, unless it was opened with keep. Every run gets a new place,
// so a re-run starts clean.
package exampledb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// Kind says what a Place is.
type Kind string

// The kinds of place.
const (
	// Throwaway is a database on a PostgreSQL started for the run.
	Throwaway Kind = "throwaway"
	// Database is a database created on DATABASE_URL's server.
	Database Kind = "database"
	// Schema is a schema created in DATABASE_URL's database.
	Schema Kind = "schema"
)

// Place is where one run of an example works.
type Place struct {
	// Kind says whether the place is a throwaway server's database, a
	// database of its own or a schema of its own.
	Kind Kind
	// Name is the database's or the schema's name.
	Name string
	// DSN connects to the place: its database, with search_path set to its
	// schema for a Schema place, so unqualified table names land there.
	DSN string
	// Schema holds the example's queue; pass QueueOptions to OpenPostgres.
	Schema string

	keep  bool
	log   io.Writer
	admin *sql.DB // on DATABASE_URL, to drop the place
	stop  func()  // stops a throwaway server
	pools []io.Closer
}

// Prefix starts the name of every example's database or schema.
const Prefix = "esync_example_"

// Open makes a fresh place for the named example (letters, digits and _)
// and says on log (nil: stderr) where it is and what becomes of it.
func Open(ctx context.Context, example string, keep bool, log io.Writer) (*Place, error) {
	if log == nil {
		log = os.Stderr
	}
	for _, r := range example {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return nil, fmt.Errorf("exampledb: example name %q is not lower-case letters, digits and _", example)
		}
	}
	env := os.Getenv("DATABASE_URL")
	if env == "" {
		dsn, stop, err := queuetest.DatabaseURL(ctx)
		if err != nil {
			return nil, err
		}
		if keep {
			fmt.Fprintln(log, "--keep: the throwaway PostgreSQL is removed when the program exits all the same; set DATABASE_URL to keep what the example made")
		}
		return &Place{Kind: Throwaway, DSN: dsn, Schema: queue.DefaultSchema, log: log, stop: stop}, nil
	}
	connector, err := pq.NewConnector(env)
	if err != nil {
		// The text of a connection string that does not parse may hold a
		// password: say what is wrong without it.
		return nil, errors.New("exampledb: DATABASE_URL is not a PostgreSQL connection string (not shown: it may hold a password)")
	}
	admin := sql.OpenDB(connector)
	admin.SetMaxOpenConns(2)
	p := &Place{Name: Prefix + example + "_" + randomSuffix(), keep: keep, log: log, admin: admin}
	switch err := p.createDatabase(ctx); {
	case err == nil:
		p.Kind, p.DSN, p.Schema = Database, withDBName(env, p.Name), queue.DefaultSchema
	case isInsufficientPrivilege(err):
		if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+pq.QuoteIdentifier(p.Name)); err != nil {
			admin.Close()
			return nil, fmt.Errorf("exampledb: the role of DATABASE_URL may neither create a database nor a schema (grant it CREATEDB, or CREATE on its database): %w", err)
		}
		comment(ctx, admin, "SCHEMA", p.Name, example)
		p.Kind, p.DSN, p.Schema = Schema, withSearchPath(env, p.Name), p.Name
	default:
		admin.Close()
		return nil, fmt.Errorf("exampledb: create database %s: %w", p.Name, err)
	}
	what := "it is dropped at the end (--keep keeps it)"
	if keep {
		what = "it is kept at the end (--keep); drop it with DROP " + strings.ToUpper(string(p.Kind)) + " " + p.Name
		if p.Kind == Schema {
			what += " CASCADE"
		}
	}
	where := "on the server of DATABASE_URL"
	if p.Kind == Schema {
		where = "in the database of DATABASE_URL"
	}
	fmt.Fprintf(log, "%s works in a %s of its own, %s %s, and touches nothing else; %s\n", example, p.Kind, p.Name, where, what)
	return p, nil
}

// createDatabase creates the place's database, retrying briefly while
// another CREATE DATABASE copies the template.
func (p *Place) createDatabase(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		_, err := p.admin.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(p.Name))
		if err == nil {
			comment(ctx, p.admin, "DATABASE", p.Name, strings.TrimPrefix(p.Name, Prefix))
			return nil
		}
		if attempt == 20 || !strings.Contains(err.Error(), "being accessed") {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// comment marks a place as an example's, so a leftover (after a kill -9)
// says what it is.
func comment(ctx context.Context, db *sql.DB, kind, name, example string) {
	db.ExecContext(ctx, "COMMENT ON "+kind+" "+pq.QuoteIdentifier(name)+" IS "+ //nolint:errcheck // a comment is a courtesy
		pq.QuoteLiteral("made by the esync example "+example+"; safe to drop"))
}

// QueueOptions place a PostgresDriver's queue in the place.
func (p *Place) QueueOptions() []queue.PostgresOption {
	return []queue.PostgresOption{queue.WithSchema(p.Schema)}
}

// OpenDriver opens and migrates a queue in the place; Close closes it.
func (p *Place) OpenDriver(ctx context.Context, opts ...queue.PostgresOption) (*queue.PostgresDriver, error) {
	d, err := queue.OpenPostgres(p.DSN, append(p.QueueOptions(), opts...)...)
	if err != nil {
		return nil, err
	}
	if err := d.Migrate(ctx); err != nil {
		d.Close()
		return nil, err
	}
	p.pools = append(p.pools, d)
	return d, nil
}

// OpenDB opens a connection pool on the place; Close closes it.
func (p *Place) OpenDB() (*sql.DB, error) {
	db, err := sql.Open("postgres", p.DSN)
	if err != nil {
		return nil, err
	}
	p.pools = append(p.pools, db)
	return db, nil
}

// Close closes the pools opened through the place and drops the place
// unless it is kept.
func (p *Place) Close() error {
	for i := len(p.pools) - 1; i >= 0; i-- {
		p.pools[i].Close()
	}
	p.pools = nil
	if p.stop != nil {
		p.stop()
		return nil
	}
	if p.admin == nil {
		return nil
	}
	defer p.admin.Close()
	if p.keep {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	if p.Kind == Schema {
		_, err = p.admin.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+pq.QuoteIdentifier(p.Name)+" CASCADE")
	} else {
		_, err = p.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pq.QuoteIdentifier(p.Name)+" WITH (FORCE)")
		var pqErr *pq.Error
		if errors.As(err, &pqErr) && pqErr.Code == "42601" { // before PostgreSQL 13: no FORCE, and the pools are closed
			_, err = p.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pq.QuoteIdentifier(p.Name))
		}
	}
	if err != nil {
		return fmt.Errorf("exampledb: drop %s %s: %w", p.Kind, p.Name, err)
	}
	return nil
}

// isInsufficientPrivilege reports a refusal for want of a privilege.
func isInsufficientPrivilege(err error) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr) && pqErr.Code == "42501"
}

// randomSuffix tells apart the places of several runs.
func randomSuffix() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
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

// withSearchPath sets the search_path of a URL or key=value connection
// string's sessions.
func withSearchPath(dsn, schema string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}
