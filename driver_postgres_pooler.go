package queue

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// minExclusiveLease is the shortest exclusive lease WithExclusiveLease
// accepts: it is renewed every quarter of it.
const minExclusiveLease = 300 * time.Millisecond

// WithPooler sets up the driver for a connection pooler in transaction mode
// (PgBouncer's pool_mode = transaction, the poolers of managed platforms),
// where consecutive transactions of one client may run on different server
// connections, so that nothing may rely on a session:
//
//   - statements are not prepared (WithPreparedStatements(false));
//   - OpenPostgres connects with lib/pq's binary_parameters=yes, which sends
//     a statement and its parameters in one round trip (without it, lib/pq
//     parses in one round trip and binds in the next, which the pooler may
//     send to another server connection: "bind message supplies 3
//     parameters, but prepared statement "" requires 5"). A *sql.DB given
//     to NewPostgresDriverFromDB must be opened with it: Migrate,
//     SyncManager.Start, claims and CDC runs refuse one that is not;
//   - no LISTEN through the pooler: with WithListenDSN (a connection string
//     that reaches PostgreSQL directly) idle streams still wake on NOTIFY;
//     without it inserts send no NOTIFY and idle streams poll, so a task
//     added to an idle stream starts within the manager's poll interval
//     (WithPollInterval, default 1s) instead of milliseconds;
//   - Exclusive streams, migrations, scheduled runs and CDC use only leases
//     in tables and transaction-scoped locks, as they always do.
func WithPooler() PostgresOption {
	return func(c *postgresConfig) { c.pooler = true }
}

// forPooler is cfg with what a transaction pooler needs.
func (c postgresConfig) forPooler() postgresConfig {
	c.prepare = false
	if c.listenDSN == "" {
		c.notify = false
	}
	return c
}

// withOneRoundTripBinding adds binary_parameters=yes to a URL or key=value
// connection string.
func withOneRoundTripBinding(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("binary_parameters", "yes")
		u.RawQuery = q.Encode()
		return u.String()
	}
	if strings.Contains(dsn, "://") {
		return dsn // not a URL lib/pq takes: let it report that
	}
	return strings.TrimSpace(dsn) + " binary_parameters=yes"
}

// errTwoRoundTrips is what a *sql.DB that binds in two round trips is
// refused with behind a pooler.
var errTwoRoundTrips = errors.New("queue: WithPooler: the *sql.DB binds parameters in a second round trip, which a transaction pooler " +
	"may send to another server connection; open it with binary_parameters=yes in its connection string")

// CheckPooler reports, for a driver set up WithPooler on a *sql.DB given
// to NewPostgresDriverFromDB, that the *sql.DB binds parameters in a second
// round trip, which cannot work through a transaction pooler;
// SyncManager.Start calls it. It reports nothing otherwise, nor when the
// database cannot be reached: claims check again until it can.
func (d *PostgresDriver) CheckPooler(ctx context.Context) error {
	if err := d.requireOneRoundTrip(ctx); errors.Is(err, errTwoRoundTrips) {
		return err
	}
	return nil
}

// requireOneRoundTrip returns checkOneRoundTrip's error when the driver is
// set up WithPooler on a *sql.DB it did not open, until a check passed.
func (d *PostgresDriver) requireOneRoundTrip(ctx context.Context) error {
	if !d.pooler || d.ownsDB || d.oneRoundTrip.Load() {
		return nil
	}
	if err := d.checkOneRoundTrip(ctx); err != nil {
		return err
	}
	d.oneRoundTrip.Store(true)
	return nil
}

// checkOneRoundTrip reports an error when the driver's *sql.DB binds
// parameters in a second round trip, which a transaction pooler breaks. It
// tells the two apart by a []byte parameter, which binary_parameters=yes
// sends as binary data: the four bytes "   7" are then the int4 538976311,
// else the text "   7", the number 7.
func (d *PostgresDriver) checkOneRoundTrip(ctx context.Context) error {
	var got int64
	if err := d.db.QueryRowContext(ctx, `SELECT $1::int4`, []byte("   7")).Scan(&got); err != nil {
		return fmt.Errorf("queue: check parameter binding: %w", err)
	}
	if got != 0x20202037 {
		return errTwoRoundTrips
	}
	return nil
}
