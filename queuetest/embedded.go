package queuetest

import (
	"context"
	"fmt"
	"os"

	"github.com/esync/queue"
)

// DatabaseURL returns DATABASE_URL when it is set. Otherwise it starts a
// server (Docker or the local binaries), creates a fresh database on it and
// returns that; stop releases it. Examples use it so that they run on a
// fresh machine with nothing configured.
func DatabaseURL(ctx context.Context) (dsn string, stop func(), err error) {
	if env := os.Getenv("DATABASE_URL"); env != "" {
		return env, func() {}, nil
	}
	s, err := Start(ctx)
	if err != nil {
		return "", nil, err
	}
	name, dsn, err := s.CreateDatabase(ctx)
	if err != nil {
		s.Close()
		return "", nil, err
	}
	fmt.Fprintf(os.Stderr, "DATABASE_URL is not set: using a throwaway PostgreSQL (%s), database %s\n", s.Source, name)
	return dsn, func() { s.Close() }, nil
}

// OpenDriver opens a migrated queue on DATABASE_URL, or on a throwaway
// PostgreSQL when that is unset: the embedded default of the examples.
// closeAll closes the driver and stops the throwaway server.
func OpenDriver(ctx context.Context, opts ...queue.PostgresOption) (driver *queue.PostgresDriver, closeAll func(), err error) {
	dsn, stop, err := DatabaseURL(ctx)
	if err != nil {
		return nil, nil, err
	}
	driver, err = queue.OpenPostgres(dsn, opts...)
	if err != nil {
		stop()
		return nil, nil, err
	}
	if err := driver.Migrate(ctx); err != nil {
		driver.Close()
		stop()
		return nil, nil, err
	}
	return driver, func() { driver.Close(); stop() }, nil
}
