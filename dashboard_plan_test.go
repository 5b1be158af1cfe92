package queue_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
)

// populateDashboard fills the queue with n tasks added a second apart
// (the newest now): mostly DONE, with some FAILED, READY, IN PROGRESS and
// SUPERSEDED ones, under five names, each with its own key. It returns when
// the table has been vacuumed and analysed.
func populateDashboard(t *testing.T, b *testBundle, n int) {
	t.Helper()
	_, err := b.db.ExecContext(b.ctx, `
INSERT INTO `+b.table+` (task_name, task_key, data, created_by, state, last_attempt_message,
	created_at, last_attempted, do_after, attempts, finished_at, lease_token, lease_expires_at)
SELECT 'job' || (i % 5), 'crm:customer:' || i, ('{"i": ' || i || '}')::jsonb, 'test', s.state,
	CASE s.state WHEN 'FAILED' THEN 'boom' ELSE '' END,
	now() - make_interval(secs => $1 - i), now() - make_interval(secs => $1 - i), now() - make_interval(secs => $1 - i),
	CASE WHEN s.state IN ('READY', 'SUPERSEDED') THEN 0 ELSE 1 END,
	CASE WHEN s.state IN ('READY', 'IN PROGRESS') THEN NULL ELSE now() - make_interval(secs => ($1 - i) / 10) END,
	CASE WHEN s.state = 'IN PROGRESS' THEN gen_random_uuid() END,
	CASE WHEN s.state = 'IN PROGRESS' THEN now() + interval '1 hour' END
FROM generate_series(1, $1) AS i,
	LATERAL (SELECT CASE WHEN i % 50 = 0 THEN 'FAILED' WHEN i % 53 = 0 THEN 'READY'
		WHEN i % 59 = 0 THEN 'IN PROGRESS' WHEN i % 61 = 0 THEN 'SUPERSEDED' ELSE 'DONE' END AS state) s
ORDER BY i`, n)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.ExecContext(b.ctx, `VACUUM ANALYZE `+b.table); err != nil {
		t.Fatal(err)
	}
}

// explainingDriver is a second driver on the same queue whose one
// connection sends the plan of every statement it runs to the test.
func explainingDriver(t *testing.T, b *testBundle) (*queue.PostgresDriver, func() []string) {
	t.Helper()
	db, takePlans := planDB(t, b)
	db.SetMaxOpenConns(1)
	for _, s := range []string{
		`LOAD 'auto_explain'`,
		`SET auto_explain.log_min_duration = 0`,
		`SET auto_explain.log_level = notice`,
		`SET client_min_messages = notice`,
	} {
		if _, err := db.ExecContext(b.ctx, s); err != nil {
			t.Skipf("auto_explain is not available here (%v)", err)
		}
	}
	d, err := queue.NewPostgresDriverFromDB(db, queue.WithSchema(b.driver.Schema()), queue.WithTable(b.driver.Table()))
	if err != nil {
		t.Fatal(err)
	}
	return d, takePlans
}

func TestDashboardQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	populateDashboard(t, b, 30_000)
	d, takePlans := explainingDriver(t, b)
	ctx := b.ctx
	seq := regexp.MustCompile(`Seq Scan on ` + regexp.QuoteMeta(b.driver.Table()) + `\b`)
	check := func(what string, run func() error, wantIndex ...string) {
		t.Helper()
		if err := run(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		plans := takePlans()
		if len(plans) == 0 {
			t.Fatalf("%s: no plan reported", what)
		}
		for _, p := range plans {
			if strings.HasPrefix(strings.TrimSpace(strings.SplitN(p, "Query Text:", 2)[1]), "SET ") {
				continue
			}
			if seq.MatchString(p) {
				t.Errorf("%s scans the whole queue table:\n%s", what, p)
			}
			if testing.Verbose() {
				t.Logf("%s:\n%s", what, p)
			}
		}
		for _, index := range wantIndex {
			uses := regexp.MustCompile(`(using|Scan on) ` + regexp.QuoteMeta(b.driver.Table()+"_"+index) + `\b`)
			if !uses.MatchString(strings.Join(plans, "\n")) {
				t.Errorf("%s does not use %s:\n%s", what, index, strings.Join(plans, "\n"))
			}
		}
	}
	now := time.Now()
	// Each filter and the indexes its list walks.
	keyIndexes := []string{"key_pending_idx", "key_running_idx", "key_started_idx", "key_unstarted_idx"}
	filters := map[string]struct {
		f       queue.TaskListFilter
		index   string
		indexes []string
	}{
		"all":           {queue.TaskListFilter{}, "pkey", nil},
		"failed":        {queue.TaskListFilter{State: queue.TaskFailed}, "failed_idx", nil},
		"cancelled":     {queue.TaskListFilter{State: queue.TaskCancelled}, "failed_idx", nil},
		"ready":         {queue.TaskListFilter{State: queue.TaskReady, Name: "job1"}, "pending_idx", nil},
		"in progress":   {queue.TaskListFilter{State: queue.TaskInProgress}, "key_running_idx", nil},
		"done":          {queue.TaskListFilter{State: queue.TaskDone}, "pkey", nil},
		"superseded":    {queue.TaskListFilter{State: queue.TaskSuperseded}, "pkey", nil},
		"name":          {queue.TaskListFilter{Name: "job3"}, "pkey", nil},
		"unknown name":  {queue.TaskListFilter{Name: "nope"}, "pkey", nil},
		"key":           {queue.TaskListFilter{Key: "crm:customer:29000"}, "", keyIndexes},
		"key, failed":   {queue.TaskListFilter{Key: "crm:customer:29000", State: queue.TaskFailed}, "", keyIndexes},
		"key prefix":    {queue.TaskListFilter{KeyPrefix: "crm:customer:2900"}, "pkey", nil},
		"time":          {queue.TaskListFilter{CreatedAfter: now.Add(-2 * time.Hour), CreatedBefore: now.Add(-time.Hour)}, "pkey", nil},
		"page 2":        {queue.TaskListFilter{BeforeID: 15_000, State: queue.TaskFailed}, "failed_idx", nil},
		"failed by key": {queue.TaskListFilter{State: queue.TaskFailed, KeyPrefix: "crm:customer:1"}, "failed_idx", nil},
	}
	for name, c := range filters {
		want := c.indexes
		if c.index != "" {
			want = append(want, c.index)
		}
		check("list "+name, func() error { _, err := d.DashboardListTasks(ctx, c.f); return err }, want...)
	}
	check("counts", func() error { _, err := d.DashboardCounts(ctx); return err },
		"pending_idx", "key_running_idx", "failed_idx")
	check("finished", func() error { _, _, err := d.DashboardFinished(ctx, now.Add(-time.Hour), time.Time{}); return err }, "finished_state_idx")
	check("finished, bounded", func() error {
		_, _, err := d.DashboardFinished(ctx, now.Add(-time.Hour), now.Add(-30*time.Minute))
		return err
	}, "finished_state_idx")
	check("oldest due", func() error { _, _, _, err := d.DashboardOldestDue(ctx); return err })
	check("running by name", func() error { _, err := d.DashboardRunningByName(ctx); return err })
	task, err := d.GetTask(ctx, 29_951) // a SUPERSEDED one
	if err != nil {
		t.Fatal(err)
	}
	check("supersede chain", func() error { _, err := d.DashboardSupersedeChain(ctx, task); return err },
		"key_started_idx", "key_unstarted_idx")
	check("lease", func() error { _, _, err := d.DashboardLease(ctx, task.ID); return err })
	check("cdc", func() error { _, err := d.DashboardCDCControllers(ctx); return err })
	for _, action := range []queue.BulkAction{queue.BulkRetry, queue.BulkCancel} {
		f := queue.TaskListFilter{Name: "job0", KeyPrefix: "crm:customer:2"}
		var p queue.BulkPreview
		check("bulk preview "+string(action), func() (err error) { p, err = d.DashboardBulkPreview(ctx, action, f); return err })
		if p.Count == 0 {
			t.Fatalf("bulk %s previews nothing", action)
		}
		check("bulk "+string(action), func() error { _, err := d.DashboardBulkApply(ctx, p, f, "test"); return err })
	}
}

// listAll pages through every task matching f.
func listAll(t *testing.T, ctx context.Context, d *queue.PostgresDriver, f queue.TaskListFilter) (ids []int64, pages int) {
	t.Helper()
	for {
		p, err := d.DashboardListTasks(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, task := range p.Tasks {
			ids = append(ids, task.ID)
		}
		if p.NextBeforeID == 0 {
			return ids, pages
		}
		f.BeforeID = p.NextBeforeID
	}
}

func TestDashboardListPagesNewestFirst(t *testing.T) {
	t.Parallel()
	b := setup(t)
	populateDashboard(t, b, 25_000)
	ctx := b.ctx

	// Every FAILED task, newest first, each once, over several pages.
	var want []int64
	rows, err := b.db.QueryContext(ctx, `SELECT id FROM `+b.table+` WHERE state = 'FAILED' ORDER BY id DESC`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		rows.Scan(&id)
		want = append(want, id)
	}
	rows.Close()
	got, pages := listAll(t, ctx, b.driver, queue.TaskListFilter{State: queue.TaskFailed, Limit: 100})
	if len(got) != len(want) || pages < 5 {
		t.Fatalf("got %d failed tasks in %d pages, want %d in 5 or more", len(got), pages, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("task %d of the list is %d, want %d", i, got[i], want[i])
		}
	}

	// A name nothing has: the first page stops after the scan window and
	// says so; the next one goes on below it and ends the list.
	p, err := b.driver.DashboardListTasks(ctx, queue.TaskListFilter{Name: "nope"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Tasks) != 0 || !p.Partial || p.NextBeforeID != 25_000-queue.DashboardScanWindow+1 {
		t.Fatalf("first page of an unknown name: %d tasks, partial %v, next %d", len(p.Tasks), p.Partial, p.NextBeforeID)
	}
	p, err = b.driver.DashboardListTasks(ctx, queue.TaskListFilter{Name: "nope", BeforeID: p.NextBeforeID})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Tasks) != 0 || p.Partial || p.NextBeforeID != 0 {
		t.Fatalf("second page of an unknown name: %d tasks, partial %v, next %d", len(p.Tasks), p.Partial, p.NextBeforeID)
	}

	// A time range: the tasks added between 100 and 50 seconds ago.
	now := time.Now()
	got, _ = listAll(t, ctx, b.driver, queue.TaskListFilter{CreatedAfter: now.Add(-100 * time.Second), CreatedBefore: now.Add(-50 * time.Second)})
	if len(got) < 49 || len(got) > 51 || got[0] < 24_940 || got[len(got)-1] > 24_910 {
		t.Fatalf("tasks added 100 to 50 s ago: %d, from %d down to %d", len(got), got[0], got[len(got)-1])
	}
}

func TestDashboardKeySearchIsLiteral(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, key := range []string{"a_b:1", "axb:2", "a%b:3", "a_b:4", `a\b:5`, "A_b:6"} {
		b.add(t, "job", key, nil)
	}
	cases := map[string]int{"a_b": 2, "a%": 1, `a\`: 1, "a": 5, "'; DROP TABLE x; --": 0, "A": 1}
	for prefix, n := range cases {
		p, err := b.driver.DashboardListTasks(b.ctx, queue.TaskListFilter{KeyPrefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Tasks) != n {
			t.Errorf("prefix %q matched %d tasks, want %d", prefix, len(p.Tasks), n)
		}
	}
	p, err := b.driver.DashboardListTasks(b.ctx, queue.TaskListFilter{Key: "a_b:4"})
	if err != nil || len(p.Tasks) != 1 || p.Tasks[0].Key != "a_b:4" {
		t.Fatalf("exact key: %v %v", p.Tasks, err)
	}
	for _, bad := range []queue.TaskListFilter{
		{State: "RUNNING"}, {Key: "a\x00b"}, {KeyPrefix: "\xff"}, {Name: strings.Repeat("n", 65)},
		{Key: "a", KeyPrefix: "a"}, {Limit: 501}, {BeforeID: -1},
		{CreatedAfter: time.Now(), CreatedBefore: time.Now().Add(-time.Hour)},
	} {
		if _, err := b.driver.DashboardListTasks(b.ctx, bad); !errors.Is(err, queue.ErrInvalidFilter) {
			t.Errorf("filter %+v: got %v, want ErrInvalidFilter", bad, err)
		}
	}
}

func TestDashboardBulkRetryKeepsTimeForward(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Key k: an old task that failed, then a newer one that ran. Key m: a
	// task that failed and nothing after it.
	old := b.add(t, "job", "k", nil)
	b.finish(t, b.claimOne(t), queue.TaskFailed, 0)
	b.add(t, "job", "k", nil)
	b.finish(t, b.claimOne(t), queue.TaskDone, 0)
	lone := b.add(t, "job", "m", nil)
	b.finish(t, b.claimOne(t), queue.TaskFailed, 0)

	p, err := b.driver.DashboardBulkPreview(b.ctx, queue.BulkRetry, queue.TaskListFilter{})
	if err != nil || p.Count != 2 || p.UpToID != lone {
		t.Fatalf("preview: %+v %v", p, err)
	}
	// A failure after the preview is not part of what was confirmed.
	b.add(t, "job", "n", nil)
	b.finish(t, b.claimOne(t), queue.TaskFailed, 0)

	res, err := b.driver.DashboardBulkApply(b.ctx, p, queue.TaskListFilter{}, "")
	if err != nil || res.Changed != 1 || res.Skipped != 1 {
		t.Fatalf("apply: %+v %v, want 1 changed and 1 skipped", res, err)
	}
	for id, want := range map[int64]queue.TaskState{old: queue.TaskFailed, lone: queue.TaskReady, lone + 1: queue.TaskFailed} {
		task, err := b.driver.GetTask(b.ctx, id)
		if err != nil || task.State != want {
			t.Errorf("task %d: %s %v, want %s", id, task.State, err, want)
		}
	}

	// Bulk cancel takes pending tasks of the filter only.
	keep := b.add(t, "other", "o", nil)
	gone := b.add(t, "job", "p", nil)
	f := queue.TaskListFilter{Name: "job", State: queue.TaskReady}
	p, err = b.driver.DashboardBulkPreview(b.ctx, queue.BulkCancel, f)
	if err != nil || p.Count != 2 { // lone (READY again) and gone
		t.Fatalf("cancel preview: %+v %v", p, err)
	}
	res, err = b.driver.DashboardBulkApply(b.ctx, p, f, "cancelled in bulk")
	if err != nil || res.Changed != 2 {
		t.Fatalf("cancel: %+v %v", res, err)
	}
	if task, _ := b.driver.GetTask(b.ctx, keep); task.State != queue.TaskReady {
		t.Errorf("task of another name is %s", task.State)
	}
	if task, _ := b.driver.GetTask(b.ctx, gone); task.State != queue.TaskCancelled || task.Message != "cancelled in bulk" {
		t.Errorf("cancelled task: %s %q", task.State, task.Message)
	}
	// Retry does not apply to a READY filter.
	if p, err := b.driver.DashboardBulkPreview(b.ctx, queue.BulkRetry, queue.TaskListFilter{State: queue.TaskReady}); err != nil || p.Count != 0 {
		t.Fatalf("retry of READY tasks: %+v %v", p, err)
	}
}

func TestDashboardSupersedeChain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := b.add(t, "job", "k", nil)
	second := b.add(t, "job", "k", nil)
	ran := b.claimOne(t)
	if ran.ID != second {
		t.Fatalf("claimed %d, want %d", ran.ID, second)
	}
	b.finish(t, ran, queue.TaskDone, 0)
	task, err := b.driver.GetTask(b.ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.driver.DashboardSupersedeChain(b.ctx, task)
	if err != nil || len(c.RanInstead) != 1 || c.RanInstead[0].ID != second || len(c.Superseded) != 0 {
		t.Fatalf("chain of the superseded task: %+v %v", c, err)
	}
	winner, _ := b.driver.GetTask(b.ctx, second)
	c, err = b.driver.DashboardSupersedeChain(b.ctx, winner)
	if err != nil || len(c.RanInstead) != 0 || len(c.Superseded) != 1 || c.Superseded[0].ID != first {
		t.Fatalf("chain of the task that ran: %+v %v", c, err)
	}
}

func TestDashboardKeyListsEveryStateOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Key k: a task that ran DONE, one superseded before it started, one
	// cancelled while pending, one that FAILED, one in flight, one pending.
	var want []int64
	superseded := b.add(t, "job", "k", nil)
	done := b.add(t, "job", "k", nil)
	b.finish(t, b.claimOne(t), queue.TaskDone, 0) // supersedes the first
	cancelled := b.add(t, "other", "k", nil)
	if err := b.driver.CancelTask(b.ctx, cancelled, "no"); err != nil {
		t.Fatal(err)
	}
	failed := b.add(t, "job", "k", nil)
	b.finish(t, b.claimOne(t), queue.TaskFailed, 0)
	running := b.add(t, "job", "k", nil)
	b.claimOne(t)
	pending := b.add(t, "job", "k", nil)
	b.add(t, "job", "k2", nil) // another key
	want = []int64{pending, running, failed, cancelled, done, superseded}

	p, err := b.driver.DashboardListTasks(b.ctx, queue.TaskListFilter{Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, task := range p.Tasks {
		got = append(got, task.ID)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("tasks of key k: %v, want %v", got, want)
	}
	// Paged two at a time, the same tasks in the same order.
	got, _ = listAll(t, b.ctx, b.driver, queue.TaskListFilter{Key: "k", Limit: 2})
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("tasks of key k, paged: %v, want %v", got, want)
	}
	p, err = b.driver.DashboardListTasks(b.ctx, queue.TaskListFilter{Key: "k", State: queue.TaskSuperseded})
	if err != nil || len(p.Tasks) != 1 || p.Tasks[0].ID != superseded {
		t.Fatalf("superseded task of key k: %v %v", p.Tasks, err)
	}
}
