package main

import (
	"bufio"
	"context"
	"database/sql"
	"os"
	"runtime"
	"strings"

	_ "github.com/lib/pq" // the "postgres" database/sql driver
)

// environment describes where the figures were taken.
type environment struct {
	Postgres  string // SELECT version()
	Source    string // where the server came from: env, docker or local
	CPUs      int
	CPUModel  string
	GoVersion string
}

// describeEnvironment reads the server's version over dsn and the machine's
// CPU count and model.
func describeEnvironment(ctx context.Context, dsn, source string) (environment, error) {
	env := environment{
		Source:    source,
		CPUs:      runtime.NumCPU(),
		CPUModel:  cpuModel(),
		GoVersion: runtime.Version(),
	}
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return env, err
	}
	defer db.Close()
	err = db.QueryRowContext(ctx, "SELECT version()").Scan(&env.Postgres)
	return env, err
}

// cpuModel is the first "model name" in /proc/cpuinfo, or "unknown".
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(key) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown"
}
