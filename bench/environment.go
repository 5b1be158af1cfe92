package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"runtime"
	"strings"

	_ "github.com/lib/pq" // the "postgres" database/sql driver
)

// environment describes where the figures were taken.
type environment struct {
	Postgres string // SELECT version()
	Source   string // where the server came from: env, docker or local
	// Durability is the server's fsync, synchronous_commit and
	// full_page_writes, as it reports them.
	Durability string
	CPUs       int
	CPUModel   string
	GoVersion  string
}

// describeEnvironment reads the server's version and durability settings
// over dsn, and the machine's CPU count and model.
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
	var fsync, syncCommit, fullPages string
	err = db.QueryRowContext(ctx, `SELECT version(), current_setting('fsync'),
current_setting('synchronous_commit'), current_setting('full_page_writes')`).Scan(&env.Postgres, &fsync, &syncCommit, &fullPages)
	env.Durability = fmt.Sprintf("fsync=%s synchronous_commit=%s full_page_writes=%s", fsync, syncCommit, fullPages)
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
