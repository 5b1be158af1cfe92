package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
	"github.com/esync/queue/web"
)

// runDashboard fills a fresh queue with cfg.DashboardTasks tasks and times
// the web dashboard's pages over HTTP on loopback: each page is fetched
// once (reported as "first"), then cfg.DashboardRequests times one after
// another.
func runDashboard(ctx context.Context, srv *queuetest.Server, cfg config, w io.Writer) error {
	name, dsn, err := srv.CreateDatabase(ctx)
	if err != nil {
		return err
	}
	defer srv.DropDatabase(context.WithoutCancel(ctx), name)
	d, err := queue.OpenPostgres(dsn)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Migrate(ctx); err != nil {
		return err
	}
	started := time.Now()
	if err := fillDashboardQueue(ctx, d, cfg.DashboardTasks); err != nil {
		return err
	}
	fmt.Fprintf(w, "dashboard: %d tasks added and vacuumed in %s\n", cfg.DashboardTasks, time.Since(started).Round(time.Second))

	h := web.Handler(d, web.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	hs := httptest.NewServer(h)
	defer hs.Close()
	n := cfg.DashboardTasks
	after := time.Now().Add(-10 * time.Minute).UTC().Format("2006-01-02T15:04")
	pages := []struct{ label, path string }{
		{"tasks, newest first", "/tasks"},
		{"tasks, FAILED", "/tasks?state=FAILED"},
		{"tasks, READY", "/tasks?state=READY"},
		{"tasks, a page halfway down", fmt.Sprintf("/tasks?before_id=%d", n/2)},
		{"tasks, one key", "/tasks?key=crm:customer:4242"},
		{"tasks, key prefix", "/tasks?key=crm:customer:4242&match=prefix"},
		{"tasks, added in the last 10 min", "/tasks?after=" + url.QueryEscape(after)},
		{"tasks, a name no task has", "/tasks?name=nothing"},
		{"task detail", fmt.Sprintf("/tasks/%d", n/3)},
		{"bulk retry preview, FAILED", "/tasks/bulk?action=retry&state=FAILED"},
		{"overview (counting the hour)", "/"},
		{"overview, once the hour is counted", "/"},
		{"CDC", "/cdc"},
	}
	fmt.Fprintf(w, "\n| page (%d tasks) | first | median | p90 | max |\n|---|---|---|---|---|\n", n)
	for _, p := range pages {
		times := make([]time.Duration, 0, cfg.DashboardRequests)
		var first time.Duration
		for i := 0; i <= cfg.DashboardRequests; i++ {
			t0 := time.Now()
			resp, err := http.Get(hs.URL + p.path)
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("dashboard: GET %s: %s", p.path, resp.Status)
			}
			if i == 0 { // the warm-up: cold caches, and the overview reads the whole last hour
				first = time.Since(t0)
			} else {
				times = append(times, time.Since(t0))
			}
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", p.label, ms(first), ms(times[len(times)/2]), ms(times[len(times)*9/10]), ms(times[len(times)-1]))
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// fillDashboardQueue adds n tasks one second apart, the newest now, in
// batches: 200,000 keys under ten names; mostly DONE (finished over the last
// two hours), 1% FAILED, 2% READY, some SUPERSEDED, the newest 50 IN
// PROGRESS. Then it vacuums and analyses the table, as autovacuum would.
func fillDashboardQueue(ctx context.Context, d *queue.PostgresDriver, n int) error {
	table := fmt.Sprintf("%q.%q", d.Schema(), d.Table())
	const batch = 100_000
	for lo := 1; lo <= n; lo += batch {
		hi := min(lo+batch-1, n)
		_, err := d.DB().ExecContext(ctx, `
INSERT INTO `+table+` (task_name, task_key, data, created_by, state, last_attempt_message,
	created_at, last_attempted, do_after, attempts, finished_at, superseded_by, lease_token, lease_expires_at)
SELECT 'sync.' || (i % 10), 'crm:customer:' || (i % 200000), jsonb_build_object('customer', i % 200000, 'email', 'c' || i || '@example.com'),
	'bench', s.state, CASE s.state WHEN 'FAILED' THEN 'CRM answered 500' WHEN 'DONE' THEN 'synced' ELSE '' END,
	now() - make_interval(secs => ($1 - i) * 0.005), now() - make_interval(secs => ($1 - i) * 0.005), now() - make_interval(secs => ($1 - i) * 0.005),
	CASE WHEN s.state IN ('READY', 'SUPERSEDED') THEN 0 ELSE 1 END,
	CASE WHEN s.state IN ('READY', 'IN PROGRESS') THEN NULL ELSE now() - make_interval(secs => ($1 - i) * 0.0072) END,
	CASE WHEN s.state = 'SUPERSEDED' THEN i + 1 END,
	CASE WHEN s.state = 'IN PROGRESS' THEN gen_random_uuid() END,
	CASE WHEN s.state = 'IN PROGRESS' THEN now() + interval '1 hour' END
FROM generate_series($2::int, $3::int) AS i,
	LATERAL (SELECT CASE WHEN i > $1 - 50 THEN 'IN PROGRESS' WHEN i % 100 = 0 THEN 'FAILED' WHEN i % 50 = 1 THEN 'READY'
		WHEN i % 37 = 0 THEN 'SUPERSEDED' ELSE 'DONE' END AS state) s
ORDER BY i`, n, lo, hi)
		if err != nil {
			return fmt.Errorf("fill the queue: %w", err)
		}
	}
	_, err := d.DB().ExecContext(ctx, `VACUUM ANALYZE `+table)
	return err
}
