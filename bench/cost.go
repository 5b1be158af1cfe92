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
	postgres map[int]time.Duration // CPU time of each PostgreSQL process
}

func readGoCost() goCost {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru) // cannot fail for RUSAGE_SELF
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return goCost{time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ms.Mallocs, postgresCPU()}
}

// perTask says what the process, and PostgreSQL when it runs on this
// machine, spent on each of n tasks since c.
func (c goCost) perTask(n int) string {
	now := readGoCost()
	out := fmt.Sprintf("Go %.1f µs CPU, %.0f allocations a task",
		float64((now.cpu-c.cpu).Nanoseconds())/1e3/float64(n), float64(now.mallocs-c.mallocs)/float64(n))
	var spent time.Duration
	for pid, to := range now.postgres {
		spent += to - c.postgres[pid] // a process started since counts whole
	}
	if spent > 0 {
		out += fmt.Sprintf("; PostgreSQL %.1f µs CPU a task", float64(spent.Nanoseconds())/1e3/float64(n))
	}
	return out
}

// postgresCPU reads the CPU time of every process on this machine named
// postgres (the postmaster, its backends and background processes); empty
// when the server runs elsewhere. A process that exits takes what it spent
// with it.
func postgresCPU() map[int]time.Duration {
	out := map[int]time.Duration{}
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
		out[pid] = processCPU(e.Name())
	}
	return out
}

// processCPU is the CPU time a single-threaded process has spent: in
// nanoseconds from /proc/<pid>/schedstat, else in clock ticks from
// /proc/<pid>/stat.
func processCPU(pid string) time.Duration {
	if b, err := os.ReadFile("/proc/" + pid + "/schedstat"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if ns, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				return time.Duration(ns)
			}
		}
	}
	return time.Duration(cpuTicks(pid)) * time.Second / clockTicks
}
