package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// goCost is what this process has spent so far: CPU time of all its
// threads (its own code, the runtime, the garbage collector) and heap
// allocations, and the CPU time of the PostgreSQL processes on this
// machine. The difference over a drain, per task, is the client's and the
// server's share of a task's cost; on a small machine they share its cores.
type goCost struct {
	cpu      time.Duration
	mallocs  uint64
	postgres map[int]int64 // CPU ticks of each PostgreSQL process
}

func readGoCost() goCost {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru) // cannot fail for RUSAGE_SELF
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return goCost{time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ms.Mallocs, postgresTicks()}
}

// perTask says what the process, and PostgreSQL when it runs on this
// machine, spent on each of n tasks since c.
func (c goCost) perTask(n int) string {
	now := readGoCost()
	out := fmt.Sprintf("Go %.1f µs CPU, %.0f allocations a task",
		float64((now.cpu-c.cpu).Nanoseconds())/1e3/float64(n), float64(now.mallocs-c.mallocs)/float64(n))
	var ticks int64
	for pid, to := range now.postgres {
		ticks += to - c.postgres[pid] // a process started since counts whole
	}
	if ticks > 0 {
		out += fmt.Sprintf("; PostgreSQL %.1f µs CPU a task", float64(ticks)*1e6/clockTicks/float64(n))
	}
	return out
}

// postgresTicks reads the CPU ticks of every process on this machine named
// postgres (the postmaster, its backends and background processes); empty
// when the server runs elsewhere. A process that exits takes what it spent
// with it.
func postgresTicks() map[int]int64 {
	out := map[int]int64{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		out[pid] = cpuTicks(e.Name())
	}
	return out
}
