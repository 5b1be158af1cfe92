package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/riverqueue/river"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

// latencies are insert-to-start delays of single tasks added one at a time
// to idle workers.
type latencies []time.Duration

// quantile returns the q-th quantile (0..1) by nearest rank.
func (l latencies) quantile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := append(latencies(nil), l...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// esyncLatency starts a SyncManager (LISTEN on) and adds LatencyN tasks one
// at a time, each after the previous one ran, timing insert to action start
// (waits) and the add call alone (adds).
func esyncLatency(ctx context.Context, dsn string, cfg config, opts ...queue.PostgresOption) (waits, adds latencies, err error) {
	d, err := queue.OpenPostgres(dsn, opts...)
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	if err := d.Migrate(ctx); err != nil {
		return nil, nil, err
	}
	started := make(chan time.Time, 1)
	sm := queue.NewSyncManager(d)
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
		started <- time.Now()
		return queue.TaskResultSuccess, ""
	}), noopTaskName)
	if err := sm.Start(ctx); err != nil {
		return nil, nil, err
	}
	defer sm.Stop()
	tm := queue.NewTaskManager(d)
	time.Sleep(200 * time.Millisecond) // the stream's first, empty claim
	for i := range cfg.LatencyN {
		t0 := time.Now()
		if _, err := tm.Add(ctx, noopTaskName, fmt.Sprintf("k%d", i), noopArgs{Num: i}); err != nil {
			return nil, nil, err
		}
		adds = append(adds, time.Since(t0))
		select {
		case at := <-started:
			waits = append(waits, at.Sub(t0))
		case <-time.After(cfg.Timeout):
			return nil, nil, fmt.Errorf("esync: task %d did not start within %s", i, cfg.Timeout)
		}
		time.Sleep(5 * time.Millisecond) // let the finish land: workers idle again
	}
	return waits, adds, nil
}

// latencyWorker reports when each job starts.
type latencyWorker struct {
	river.WorkerDefaults[noopArgs]
	started chan time.Time
}

// Work records the start.
func (w *latencyWorker) Work(context.Context, *river.Job[noopArgs]) error {
	w.started <- time.Now()
	return nil
}

// riverLatency does the same with a River client with `river bench`'s
// fetch settings.
func riverLatency(ctx context.Context, dsn string, cfg config) (waits, adds latencies, err error) {
	b, err := newRiverBench(ctx, dsn, cfg, 0)
	if err != nil {
		return nil, nil, err
	}
	defer b.Close()
	w := &latencyWorker{started: make(chan time.Time, 1)}
	workers := river.NewWorkers()
	river.AddWorker(workers, w)
	client, err := river.NewClient(b.driver, &river.Config{
		Logger:            b.logger,
		Workers:           workers,
		FetchCooldown:     2 * time.Millisecond,
		FetchPollInterval: 20 * time.Millisecond,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 100}},
	})
	if err != nil {
		return nil, nil, err
	}
	if err := client.Start(ctx); err != nil {
		return nil, nil, err
	}
	defer client.Stop(context.Background())
	time.Sleep(200 * time.Millisecond)
	for i := range cfg.LatencyN {
		t0 := time.Now()
		if _, err := client.Insert(ctx, noopArgs{Num: i}, nil); err != nil {
			return nil, nil, err
		}
		adds = append(adds, time.Since(t0))
		select {
		case at := <-w.started:
			waits = append(waits, at.Sub(t0))
		case <-time.After(cfg.Timeout):
			return nil, nil, fmt.Errorf("river: job %d did not start within %s", i, cfg.Timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return waits, adds, nil
}

// runLatency measures insert-to-start latency of both sides in interleaved
// rounds, each on a fresh database, and prints p50 and p99 with ratios.
func runLatency(ctx context.Context, srv *queuetest.Server, cfg config, w io.Writer) error {
	var e, r, eAdds, rAdds latencies
	for round := 1; round <= cfg.Rounds; round++ {
		for _, side := range []string{"esync", "River"} {
			name, dsn, err := srv.CreateDatabase(ctx)
			if err != nil {
				return err
			}
			var l, adds latencies
			if side == "esync" {
				l, adds, err = esyncLatency(ctx, dsn, cfg)
			} else {
				l, adds, err = riverLatency(ctx, dsn, cfg)
			}
			srv.DropDatabase(ctx, name)
			if err != nil {
				return fmt.Errorf("latency %s: %w", side, err)
			}
			fmt.Fprintf(w, "round %d  insert→start latency, %d single tasks  %-5s p50 %s  p99 %s  (the insert call alone p50 %s)\n",
				round, cfg.LatencyN, side, l.quantile(0.5).Round(10*time.Microsecond), l.quantile(0.99).Round(10*time.Microsecond),
				adds.quantile(0.5).Round(10*time.Microsecond))
			if side == "esync" {
				e, eAdds = append(e, l...), append(eAdds, adds...)
			} else {
				r, rAdds = append(r, l...), append(rAdds, adds...)
			}
		}
	}
	fmt.Fprintf(w, "\n| insert→start latency (%d rounds × %d) | esync | River | esync/River |\n|---|---:|---:|---:|\n", cfg.Rounds, cfg.LatencyN)
	for _, row := range []struct {
		name string
		e, r latencies
		q    float64
	}{
		{"p50", e, r, 0.5},
		{"p99", e, r, 0.99},
		{"the insert call alone (Add, Insert), p50", eAdds, rAdds, 0.5},
		{"from the insert's return to the start, p50", runnerPart(e, eAdds), runnerPart(r, rAdds), 0.5},
	} {
		ev, rv := row.e.quantile(row.q), row.r.quantile(row.q)
		fmt.Fprintf(w, "| %s | %s | %s | %.2f× |\n", row.name, ev.Round(10*time.Microsecond), rv.Round(10*time.Microsecond), float64(ev)/float64(rv))
	}
	fmt.Fprintln(w)
	return nil
}

// runnerPart is each wait less its insert call: the runner's part of an
// insert→start.
func runnerPart(waits, adds latencies) latencies {
	out := make(latencies, len(waits))
	for i := range waits {
		out[i] = max(waits[i]-adds[i], 0)
	}
	return out
}
