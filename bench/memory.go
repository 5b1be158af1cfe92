package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// rssKB reads a field of /proc/<pid>/status ("VmHWM", "RssAnon", …) in kB;
// 0 when it cannot (another machine, another OS).
func rssKB(pid, field string) int64 {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// backendMemory samples the private memory (RssAnon: not the shared
// buffers every backend maps) of the PostgreSQL backends and parallel
// workers serving one database, while a measurement runs. It only sees
// them when the server runs on this machine.
type backendMemory struct {
	mu           sync.Mutex
	maxOne       int64         // largest single process, kB
	maxAll       int64         // largest sum over the database's processes at one time, kB
	sampled      bool          // the first sample was taken
	cpuFrom      map[int]int64 // CPU ticks of each process when first seen (0 if it started later)
	cpuTo        map[int]int64 // CPU ticks of each process when last seen
	db           *sql.DB
	stop, exited chan struct{}
	once         sync.Once
}

// watchBackends starts sampling the backends of db's database every 20 ms.
func watchBackends(ctx context.Context, db *sql.DB) *backendMemory {
	m := &backendMemory{db: db, stop: make(chan struct{}), exited: make(chan struct{}), cpuFrom: map[int]int64{}, cpuTo: map[int]int64{}}
	go func() {
		defer close(m.exited)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			m.sample(ctx, db)
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

func (m *backendMemory) sample(ctx context.Context, db *sql.DB) {
	rows, err := db.QueryContext(ctx, `SELECT pid FROM pg_stat_activity
WHERE (datname = current_database() OR backend_type = 'parallel worker') AND pid <> pg_backend_pid()`)
	if err != nil {
		return
	}
	defer rows.Close()
	var sum int64
	m.mu.Lock()
	defer m.mu.Unlock()
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) != nil {
			return
		}
		kb := rssKB(strconv.Itoa(pid), "RssAnon")
		sum += kb
		m.maxOne = max(m.maxOne, kb)
		ticks := cpuTicks(strconv.Itoa(pid))
		if _, seen := m.cpuFrom[pid]; !seen {
			m.cpuFrom[pid] = 0 // started while sampling: all its time counts
			if !m.sampled {
				m.cpuFrom[pid] = ticks
			}
		}
		m.cpuTo[pid] = max(m.cpuTo[pid], ticks)
	}
	m.sampled = true
	m.maxAll = max(m.maxAll, sum)
}

// cpuTicks reads the user and system CPU time of a process from
// /proc/<pid>/stat, in clock ticks; 0 when it cannot.
func cpuTicks(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces; fields follow it.
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok {
		return 0
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat times
// (100 on every Linux machine this runs on).
const clockTicks = 100

// cpu is the CPU time the sampled processes spent while sampling (a lower
// bound: a process that exits loses what it spent since its last sample).
func (m *backendMemory) cpu() time.Duration {
	m.done()
	m.mu.Lock()
	defer m.mu.Unlock()
	var ticks int64
	for pid, to := range m.cpuTo {
		ticks += to - m.cpuFrom[pid]
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// done stops sampling (once; later calls only report) and says what was
// seen, in MB.
func (m *backendMemory) done() (one, all float64) {
	m.once.Do(func() {
		close(m.stop)
		<-m.exited
		m.sample(context.Background(), m.db) // what was spent since the last tick
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	return float64(m.maxOne) / 1024, float64(m.maxAll) / 1024
}

// formatMB prints a size in MB, or "n/a" when nothing was measured.
func formatMB(mb float64) string {
	if mb == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f MB", mb)
}
