package queuetest

import (
	"context"
	"fmt"
	"os"
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
