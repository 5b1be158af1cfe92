package queue

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one versioned SQL file from migrations/.
type migration struct {
	version int
	name    string
	text    string
}

// migrations lists the embedded migrations in version order. File names
// start with their version: 001_seed_schema.sql.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("queue: migration %q has no version prefix", e.Name())
		}
		b, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), text: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// migrationLockKey serialises Migrate across processes and connections.
const migrationLockKey = 0x65737963 // "esyc"

// Migrate creates or upgrades the queue and CDC tables to the current
// version. It is idempotent and safe to call from several processes at once:
// callers queue on an advisory lock and all pending migrations apply in one
// transaction. A database holding the original esync tables is upgraded in
// place, keeping its rows.
func (d *PostgresDriver) Migrate(ctx context.Context) error {
	all, err := migrations()
	if err != nil {
		return err
	}
	if err := d.requireOneRoundTrip(ctx); err != nil {
		return err
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("queue: migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey); err != nil {
		return fmt.Errorf("queue: migrate: lock: %w", err)
	}
	ledger := quoteQualified(d.schema, "esync_migrations")
	setup := `CREATE SCHEMA IF NOT EXISTS ` + d.names.Schema + `;
CREATE TABLE IF NOT EXISTS ` + ledger + ` (
	queue_table text NOT NULL,
	version integer NOT NULL,
	name text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (queue_table, version)
)`
	if _, err := tx.ExecContext(ctx, setup); err != nil {
		return fmt.Errorf("queue: migrate: create ledger: %w", err)
	}
	applied, err := appliedVersions(ctx, tx, ledger, d.table)
	if err != nil {
		return err
	}
	for _, m := range all {
		if applied[m.version] {
			continue
		}
		if _, err := tx.ExecContext(ctx, d.names.render(m.name, m.text)); err != nil {
			return fmt.Errorf("queue: migrate %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+ledger+` (queue_table, version, name) VALUES ($1, $2, $3)`,
			d.table, m.version, m.name); err != nil {
			return fmt.Errorf("queue: migrate %s: record: %w", m.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("queue: migrate: commit: %w", err)
	}
	return nil
}

// MigrationVersion reports the newest migration applied to this queue table
// (0 when none).
func (d *PostgresDriver) MigrationVersion(ctx context.Context) (int, error) {
	var v int
	err := d.db.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM `+
		quoteQualified(d.schema, "esync_migrations")+` WHERE queue_table = $1`, d.table).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("queue: migration version: %w", err)
	}
	return v, nil
}

func appliedVersions(ctx context.Context, tx *sql.Tx, ledger, table string) (map[int]bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT version FROM `+ledger+` WHERE queue_table = $1`, table)
	if err != nil {
		return nil, fmt.Errorf("queue: migrate: read ledger: %w", err)
	}
	defer rows.Close()
	applied := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		applied[v] = true
	}
	return applied, rows.Err()
}
