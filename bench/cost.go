package main

import (
	"fmt"
	"runtime"
	"syscall"
	"time"
)

// goCost is what this process has spent so far: CPU time of all its
// threads (its own code, the runtime, the garbage collector) and heap
// allocations. The difference over a drain, per task, is the client's
// share of a task's cost; on a small machine it is taken from PostgreSQL.
type goCost struct {
	cpu     time.Duration
	mallocs uint64
}

func readGoCost() goCost {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru) // cannot fail for RUSAGE_SELF
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return goCost{time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ms.Mallocs}
}

// perTask says what the process spent on each of n tasks since c.
func (c goCost) perTask(n int) string {
	now := readGoCost()
	return fmt.Sprintf("Go %.1f µs CPU, %.0f allocations a task",
		float64((now.cpu-c.cpu).Nanoseconds())/1e3/float64(n), float64(now.mallocs-c.mallocs)/float64(n))
}
