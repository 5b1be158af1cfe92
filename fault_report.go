package queue

import (
	"fmt"
	"sync"
	"time"
)

// faultReport turns the errors of one repeated operation (a stream's claim,
// a maintenance pass, lease extensions) into few reports: the first error
// of a streak is reported at once, further ones at most once per
// faultReportEvery with how many there were, and the end of the streak is
// logged once. It also gives the backoff to wait before the next try.
type faultReport struct {
	m    *SyncManager
	what string // "stream \"crm\": claim", …
	base time.Duration
	cap  time.Duration

	mu           sync.Mutex
	failures     int       // in the current streak
	since        time.Time // start of the streak
	lastReported time.Time
	unreported   int
}

// faultReportEvery bounds how often a lasting fault is reported again.
const faultReportEvery = 30 * time.Second

func newFaultReport(m *SyncManager, what string, base, cap time.Duration) *faultReport {
	return &faultReport{m: m, what: what, base: base, cap: max(cap, base)}
}

// fail records an error, reports it when due, and returns how long to wait
// before trying again: base, doubling per failure in the streak, capped.
func (f *faultReport) fail(err error) time.Duration {
	f.mu.Lock()
	now := time.Now()
	f.failures++
	var report error
	switch {
	case f.failures == 1:
		f.since, f.lastReported, f.unreported = now, now, 0
		report = fmt.Errorf("%s: %w", f.what, err)
	case now.Sub(f.lastReported) >= faultReportEvery:
		report = fmt.Errorf("%s: still failing after %d attempts over %s (%d not reported): %w",
			f.what, f.failures, now.Sub(f.since).Round(time.Millisecond), f.unreported, err)
		f.lastReported, f.unreported = now, 0
	default:
		f.unreported++
	}
	wait := f.base
	for i := 1; i < f.failures && wait < f.cap; i++ {
		wait *= 2
	}
	f.mu.Unlock()
	if report != nil {
		f.m.report(report)
	}
	return min(wait, f.cap)
}

// ok ends a streak of failures, logging the recovery once.
func (f *faultReport) ok() {
	f.mu.Lock()
	failures, since := f.failures, f.since
	f.failures = 0
	f.mu.Unlock()
	if failures > 0 {
		f.m.cfg.logger.Info("esync: recovered", "what", f.what, "failures", failures,
			"after", time.Since(since).Round(time.Millisecond))
	}
}

// failing reports whether the last attempt failed.
func (f *faultReport) failing() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failures > 0
}
