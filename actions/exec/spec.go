package execaction

import (
	"os"
	"time"
)

// spec is one run of the program, with every template already resolved.
type spec struct {
	program string
	args    []string
	env     []string
	dir     string
	stdin   []byte
	grace   time.Duration
	limit   int
}

// outcome is how a run ended.
type outcome struct {
	startErr error            // the program could not be started
	state    *os.ProcessState // how the program ended, if it started
	stopped  error            // the context's error if the run was stopped
	stdout   *tail
	stderr   *tail
}
