package web_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
	"github.com/esync/queue/web"
)

// One headless Chromium serves every browser test of the package; each
// test opens its own tab, one test at a time: Chromium on two shared cores
// is slow, and several tabs at once starve the other packages' tests run
// beside this one.
var browser struct {
	once   sync.Once
	ctx    context.Context
	cancel func()
	err    error
	turn   sync.Mutex
}

func TestMain(m *testing.M) {
	code := m.Run()
	if browser.cancel != nil {
		browser.cancel()
	}
	os.Exit(code)
}

// chromiumPath finds a Chromium or Chrome binary on PATH.
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// newTab opens a tab of the shared browser for the test. Without a
// Chromium the test is skipped, or fails when a real setup is required
// (ESYNC_REQUIRE_PG or CI set).
func newTab(t *testing.T) context.Context {
	t.Helper()
	browser.once.Do(func() {
		path := chromiumPath()
		if path == "" {
			browser.err = errors.New("no chromium binary on PATH (Debian: apt-get install chromium)")
			return
		}
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(path),
			chromedp.NoSandbox, // as root, as CI runs
			chromedp.Flag("disable-dev-shm-usage", true),
			chromedp.WindowSize(1200, 860),
		)
		actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, bcancel := chromedp.NewContext(actx)
		// The browser lives as long as the context of its first call: no
		// timeout on that one.
		if err := chromedp.Do(bctx); err != nil {
			bcancel()
			acancel()
			browser.err = fmt.Errorf("start %s: %w", path, err)
			return
		}
		browser.ctx, browser.cancel = bctx, func() { bcancel(); acancel() }
	})
	if browser.err != nil {
		if os.Getenv(queuetest.RequireEnv) != "" || os.Getenv("CI") != "" {
			t.Fatalf("browser tests need Chromium: %v", browser.err)
		}
		t.Skipf("browser tests skipped: %v", browser.err)
	}
	browser.turn.Lock()
	t.Cleanup(browser.turn.Unlock)
	tab, cancel := chromedp.NewContext(browser.ctx)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	tab, cancelTimeout := context.WithTimeout(tab, 45*time.Second)
	t.Cleanup(cancelTimeout)
	return tab
}

// run runs browser steps and fails the test on an error.
func run(t *testing.T, tab context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(tab, steps...); err != nil {
		t.Fatal(err)
	}
}

// eval runs an action that returns a value and fails the test on an error.
func eval[T any](t *testing.T, tab context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(tab, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// click clicks the first element matching the CSS selector sel.
func click(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)
}

// text reads the text of the first element matching sel, once it is visible.
func text(t *testing.T, tab context.Context, sel string) string {
	t.Helper()
	run(t, tab, chromedp.WaitVisible(chromedp.CSS(sel)))
	return eval(t, tab, chromedp.Text(chromedp.CSS(sel)))
}

// waitState waits until task id is in state (written by another goroutine).
func waitState(t *testing.T, f *fixture, id int64, want queue.TaskState) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		task, err := f.driver.GetTask(f.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if task.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d is %s, still not %s", id, task.State, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBrowserLoadsEveryPage(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tab := newTab(t)
	failed := f.failedTask(t, "crm.sync", "crm:customer:7")
	// Two tasks of one key: the newer runs, the older is superseded.
	older, _ := f.tm.Add(f.ctx, "crm.sync", "crm:customer:8", map[string]any{"v": 1})
	newer, _ := f.tm.Add(f.ctx, "crm.sync", "crm:customer:8", map[string]any{"v": 2})
	claimed, err := f.driver.Claim(f.ctx, queue.ClaimParams{Names: []string{"crm.sync"}, Limit: 1, Lease: time.Minute})
	if err != nil || len(claimed) != 1 || claimed[0].ID != newer {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	if _, err := f.driver.Finish(f.ctx, []queue.Completion{{Lease: claimed[0].Lease, State: queue.TaskDone}}); err != nil {
		t.Fatal(err)
	}
	// A CDC controller that emitted two changes as tasks, not yet run.
	if _, err := f.driver.DB().ExecContext(f.ctx, `CREATE TABLE customers (id int PRIMARY KEY, email text);
		INSERT INTO customers VALUES (1, 'a@example.com'), (2, 'b@example.com')`); err != nil {
		t.Fatal(err)
	}
	cdc, err := queue.NewCDCRunner(f.driver, "customers", queue.TrackColumns(`SELECT id AS object_id, email FROM customers`),
		queue.CDCTasks{Create: "crm.create", Update: "crm.update", Delete: "crm.delete"})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := cdc.Run(f.ctx); err != nil || n != 2 {
		t.Fatalf("CDC run: %d %v", n, err)
	}
	// A schedule that fired, as the SyncManager records it.
	if _, err := f.driver.StartScheduledRun(f.ctx, "crm/reconcile@1h", "worker-1", time.Minute); err != nil {
		t.Fatal(err)
	}
	base := f.srv.URL + "/esync"

	run(t, tab, chromedp.Navigate(base+"/"))
	if h := text(t, tab, "h1"); h != "Overview" {
		t.Fatalf("overview heading %q", h)
	}
	if n := text(t, tab, "#failed-total"); n != "1" {
		t.Errorf("overview counts %s failed, want 1", n)
	}
	if s := text(t, tab, "#counts"); !strings.Contains(s, "crm.sync") || !strings.Contains(s, "crm.create") {
		t.Errorf("counts table lacks names:\n%s", s)
	}
	bars := eval(t, tab, chromedp.Evaluate[int](`document.querySelectorAll("svg.chart rect.done, svg.chart rect.uncounted").length`))
	if bars != 60 {
		t.Errorf("chart has %d bars, want 60", bars)
	}
	if s := text(t, tab, "#processes-alive"); !strings.Contains(s, "processes alive") {
		t.Errorf("overview pretends to know processes: %q", s)
	}

	run(t, tab, chromedp.Navigate(base+"/tasks?key=crm:customer:8"))
	if s := text(t, tab, "#tasks tbody"); !strings.Contains(s, "SUPERSEDED") || !strings.Contains(s, "DONE") || strings.Contains(s, "crm:customer:7") {
		t.Errorf("tasks of key crm:customer:8:\n%s", s)
	}
	run(t, tab, click(fmt.Sprintf(`#tasks a[href$="/tasks/%d"]`, older)))
	if s := text(t, tab, "#chain"); !strings.Contains(s, fmt.Sprintf("task %d (DONE)", newer)) {
		t.Errorf("the superseded task's chain does not lead to the one that ran:\n%s", s)
	}
	if s := text(t, tab, "#data"); !strings.Contains(s, `"v": 1`) {
		t.Errorf("task data: %q", s)
	}
	run(t, tab, chromedp.Navigate(fmt.Sprintf("%s/tasks/%d", base, failed)))
	if s := text(t, tab, "#message"); s != "CRM said 500" {
		t.Errorf("last message %q", s)
	}

	for _, p := range []struct{ path, heading, sel, want string }{
		{"/streams", "Streams", "#streams", "No streams reported."},
		{"/schedules", "Schedules", "#schedules", "crm/reconcile@1h"},
		{"/cdc", "CDC controllers", "#cdc", "customers"},
		{"/processes", "Processes", "#processes", "No process is running."},
	} {
		run(t, tab, chromedp.Navigate(base+p.path))
		if s := text(t, tab, "h1"); s != p.heading {
			t.Errorf("%s: heading %q, want %q", p.path, s, p.heading)
		}
		if s := text(t, tab, p.sel); !strings.Contains(s, p.want) {
			t.Errorf("%s: %s says %q, want %q", p.path, p.sel, s, p.want)
		}
	}
	run(t, tab, chromedp.Navigate(base+"/cdc"))
	if s := text(t, tab, "#cdc td.pending"); s != "2" {
		t.Errorf("CDC pending %q, want 2", s)
	}
}

func TestBrowserRetryOfAFailedTaskRunsIt(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tab := newTab(t)
	var calls atomic.Int32
	ran := make(chan int32, 2)
	m := queue.NewSyncManager(f.driver, queue.WithPollInterval(20*time.Millisecond))
	m.SetErrorHandler(func(error) {})
	err := m.RegisterTaskHandler(queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
		n := calls.Add(1)
		defer func() { ran <- n }()
		if n == 1 {
			return queue.TaskResultPermanentFailure, "CRM said 500"
		}
		return queue.TaskResultSuccess, "synced"
	}), "crm.sync")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(f.ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	id, err := f.tm.Add(f.ctx, "crm.sync", "crm:customer:42", map[string]any{"email": "x@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	<-ran
	waitState(t, f, id, queue.TaskFailed)

	run(t, tab, chromedp.Navigate(f.srv.URL+"/esync/tasks?state=FAILED"))
	run(t, tab, click(fmt.Sprintf(`#tasks a[href$="/tasks/%d"]`, id)))
	if s := text(t, tab, "#state"); s != "FAILED" {
		t.Fatalf("detail shows %s", s)
	}
	if s := text(t, tab, "#message"); s != "CRM said 500" {
		t.Fatalf("detail message %q", s)
	}
	run(t, tab, click("#retry"))
	if s := text(t, tab, "#notice"); !strings.Contains(s, "READY again") {
		t.Fatalf("after retry: %q", s)
	}
	if n := <-ran; n != 2 {
		t.Fatalf("run %d after the retry", n)
	}
	waitState(t, f, id, queue.TaskDone)
	run(t, tab, chromedp.Reload())
	if s := text(t, tab, "#state"); s != "DONE" {
		t.Fatalf("after the second run the page shows %s", s)
	}
	if s := text(t, tab, "#message"); s != "synced" {
		t.Fatalf("after the second run the message is %q", s)
	}
}

func TestBrowserBulkRetryConfirms(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tab := newTab(t)
	var ids []int64
	for i := range 3 {
		ids = append(ids, f.failedTask(t, "crm.sync", fmt.Sprintf("crm:customer:%d", i)))
	}
	run(t, tab, chromedp.Navigate(f.srv.URL+"/esync/tasks?state=FAILED"), click("#bulk-retry"),
		chromedp.WaitVisible(chromedp.CSS("#bulk-count")))
	if count := eval(t, tab, chromedp.AttributeValue(chromedp.CSS("#bulk-count"), "data-count")); count.Value != "3" {
		t.Fatalf("confirmation counts %q tasks, want 3", count.Value)
	}
	for _, id := range ids {
		if s := f.state(t, id); s != queue.TaskFailed {
			t.Fatalf("task %d is %s before the confirmation", id, s)
		}
	}
	run(t, tab, click("#confirm"))
	if s := text(t, tab, "#notice"); !strings.Contains(s, "3 tasks retried") {
		t.Fatalf("after the confirmation: %q", s)
	}
	for _, id := range ids {
		if s := f.state(t, id); s != queue.TaskReady {
			t.Errorf("task %d is %s, want READY", id, s)
		}
	}
}

func TestBrowserReadOnlyRefusesActions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.WithReadOnly())
	tab := newTab(t)
	id := f.failedTask(t, "crm.sync", "crm:customer:1")
	run(t, tab, chromedp.Navigate(fmt.Sprintf("%s/esync/tasks/%d", f.srv.URL, id)))
	if s := text(t, tab, "#read-only"); s != "read-only" {
		t.Fatalf("badge %q", s)
	}
	hasButton := eval(t, tab, chromedp.Evaluate[bool](`document.getElementById("retry") !== null || document.querySelector("form[method=post]") !== null`))
	// A form posted anyway, as a stale page or a script would.
	answer := eval(t, tab, chromedp.Evaluate[string](fmt.Sprintf(
		`fetch("/esync/tasks/%d/retry", {method: "POST", body: new URLSearchParams({csrf: "x"})}).then(async r => r.status + " " + await r.text())`, id),
		chromedp.EvalAwaitPromise))
	if hasButton {
		t.Error("the read-only page offers an action")
	}
	if !strings.HasPrefix(answer, "403 ") || !strings.Contains(answer, "This dashboard is read-only") {
		t.Errorf("POST to a read-only dashboard answered %.60q…, want 403 saying it is read-only", answer)
	}
	if s := f.state(t, id); s != queue.TaskFailed {
		t.Fatalf("task is %s", s)
	}
}

// TestBrowserScreenshot writes a PNG of the overview of a queue with an
// hour of history to $ESYNC_SCREENSHOT (the README's picture).
func TestBrowserScreenshot(t *testing.T) {
	path := os.Getenv("ESYNC_SCREENSHOT")
	if path == "" {
		t.Skip("set ESYNC_SCREENSHOT=file.png to take the overview's screenshot")
	}
	f := newFixture(t)
	tab := newTab(t)
	// An hour of history, written as rows: a sync that mostly succeeds, an
	// email sender, a CRM outage twenty minutes ago.
	_, err := f.driver.DB().ExecContext(f.ctx, `
INSERT INTO message_queue (task_name, task_key, state, attempts, created_at, last_attempted, finished_at, last_attempt_message)
SELECT CASE WHEN i % 3 = 0 THEN 'email.send' ELSE 'crm.update' END, 'customer:' || i,
	CASE WHEN i % 3 <> 0 AND (i % 40 = 0 OR (i % 3600 BETWEEN 1150 AND 1300 AND i % 4 = 0)) THEN 'FAILED'
		WHEN i % 17 = 0 THEN 'SUPERSEDED' ELSE 'DONE' END,
	1, now() - make_interval(secs => 3600 - i), now() - make_interval(secs => 3600 - i),
	now() - make_interval(secs => 3600 - i) + interval '2 seconds', 'CRM answered 503'
FROM generate_series(1, 3599) AS i, generate_series(1, 1 + (i % 7)) AS burst`)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := f.tm.Add(f.ctx, "crm.update", fmt.Sprintf("customer:%d", 5000+i), nil); err != nil {
			t.Fatal(err)
		}
	}
	run(t, tab, chromedp.EmulateViewport(1100, 760), chromedp.Navigate(f.srv.URL+"/esync/"), chromedp.WaitVisible(chromedp.CSS("#counts")))
	png := eval(t, tab, chromedp.CaptureScreenshot())
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBrowserLiveRefreshShowsNewTasks(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.WithRefreshInterval(200*time.Millisecond))
	tab := newTab(t)
	run(t, tab, chromedp.Navigate(f.srv.URL+"/esync/tasks"), chromedp.WaitVisible(chromedp.CSS("#no-tasks")), click("#live"))
	id, err := f.tm.Add(f.ctx, "crm.sync", "crm:customer:9", nil)
	if err != nil {
		t.Fatal(err)
	}
	// No reload from the test: the page's script brings the task in.
	run(t, tab, chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#tasks tr[data-id="%d"]`, id))))
	if s := text(t, tab, "#live"); s != "" {
		t.Fatalf("live box has text %q", s)
	}
	if on := eval(t, tab, chromedp.Evaluate[bool](`document.getElementById("live").checked`)); !on {
		t.Fatal("the live box was unticked by the refresh")
	}
}

// claimLog is a SyncManager's driver that notes its claims: how many have
// begun, and per stream the number of the last one that found nothing.
type claimLog struct {
	*queue.PostgresDriver
	mu        sync.Mutex
	begun     int
	lastEmpty map[string]int
	changed   chan struct{} // closed, and replaced, when a claim ends
}

func newClaimLog(d *queue.PostgresDriver) *claimLog {
	return &claimLog{PostgresDriver: d, lastEmpty: map[string]int{}, changed: make(chan struct{})}
}

func (c *claimLog) Claim(ctx context.Context, p queue.ClaimParams) ([]queue.ClaimedTask, error) {
	c.mu.Lock()
	c.begun++
	n := c.begun
	c.mu.Unlock()
	got, err := c.PostgresDriver.Claim(ctx, p)
	c.mu.Lock()
	if err == nil && len(got) == 0 {
		c.lastEmpty[p.Stream] = max(c.lastEmpty[p.Stream], n)
	}
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	return got, err
}

// mark is the number of claims begun so far.
func (c *claimLog) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.begun
}

// waitEmptyClaim waits until a claim of stream begun after mark has found
// nothing.
func (c *claimLog) waitEmptyClaim(t *testing.T, ctx context.Context, stream string, mark int) {
	t.Helper()
	for {
		c.mu.Lock()
		done, changed := c.lastEmpty[stream] > mark, c.changed
		c.mu.Unlock()
		if done {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("no claim of stream %q found nothing after claim %d: %v", stream, mark, ctx.Err())
		}
	}
}

// receive waits for a value on ch, at most as long as ctx.
func receive[T any](t *testing.T, ctx context.Context, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("no %s: %v", what, ctx.Err())
		var zero T
		return zero
	}
}

// TestBrowserPausedStreamStartsNothingUntilResumed: a stream paused from the
// Streams page starts none of its tasks while the manager keeps claiming,
// and runs them once resumed from the page.
func TestBrowserPausedStreamStartsNothingUntilResumed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tab := newTab(t)
	claims := newClaimLog(f.driver)
	crmStarted, mailStarted := make(chan string, 8), make(chan string, 8)
	m := queue.NewSyncManager(claims, queue.WithPollInterval(20*time.Millisecond))
	m.SetErrorHandler(func(error) {})
	for _, h := range []struct {
		name, stream string
		started      chan<- string
	}{{"crm.sync", "crm", crmStarted}, {"mail.send", "mail", mailStarted}} {
		err := m.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
			h.started <- task.Key
			return queue.TaskResultSuccess, "sent"
		}), h.name, queue.InStream(h.stream))
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := m.ConfigureStream("crm", queue.WithConcurrency(4)); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(f.ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })

	crmRow := `#streams tr[data-stream="crm"]`
	run(t, tab, chromedp.Navigate(f.srv.URL+"/esync/streams"))
	if s := text(t, tab, crmRow+" td:nth-child(4)"); s != "running" {
		t.Fatalf("before the pause the crm stream shows %q", s)
	}
	run(t, tab, click(crmRow+` button`))
	if s := text(t, tab, "#notice"); s != `Stream "crm" paused.` {
		t.Fatalf("after the pause: %q", s)
	}
	if s := text(t, tab, crmRow+" td:nth-child(4)"); s != "paused" {
		t.Fatalf("after the pause the crm stream shows %q", s)
	}
	if s := text(t, tab, `#streams tr[data-stream="mail"] td:nth-child(4)`); s != "running" {
		t.Fatalf("after the pause of crm the mail stream shows %q", s)
	}

	keys := map[string]bool{}
	var ids []int64
	for i := range 3 {
		key := fmt.Sprintf("crm:customer:%d", i)
		id, err := f.tm.Add(f.ctx, "crm.sync", key, nil)
		if err != nil {
			t.Fatal(err)
		}
		keys[key], ids = true, append(ids, id)
	}
	mark := claims.mark()
	// The manager keeps claiming: a task of the unpaused stream, added
	// after the paused stream's tasks, runs; and a claim of the paused
	// stream begun after they were added finds nothing.
	if _, err := f.tm.Add(f.ctx, "mail.send", "mail:welcome:1", nil); err != nil {
		t.Fatal(err)
	}
	if k := receive(t, f.ctx, mailStarted, "start of the mail task"); k != "mail:welcome:1" {
		t.Fatalf("mail stream ran %q", k)
	}
	claims.waitEmptyClaim(t, f.ctx, "crm", mark)
	select {
	case k := <-crmStarted:
		t.Fatalf("task %q started while its stream was paused", k)
	default:
	}
	for _, id := range ids {
		if s := f.state(t, id); s != queue.TaskReady {
			t.Fatalf("task %d is %s while its stream is paused", id, s)
		}
	}

	// Back to the page without the pause's notice: the resume's notice then
	// tells its answer has loaded.
	run(t, tab, chromedp.Navigate(f.srv.URL+"/esync/streams"))
	if s := text(t, tab, crmRow+" button"); s != "Resume" {
		t.Fatalf("the paused stream offers %q", s)
	}
	run(t, tab, click(crmRow+` button`))
	if s := text(t, tab, "#notice"); s != `Stream "crm" resumed.` {
		t.Fatalf("after the resume: %q", s)
	}
	if s := text(t, tab, crmRow+" td:nth-child(4)"); s != "running" {
		t.Fatalf("after the resume the crm stream shows %q", s)
	}
	for range ids {
		k := receive(t, f.ctx, crmStarted, "start of a crm task after the resume")
		if !keys[k] {
			t.Fatalf("after the resume %q started, twice or unknown", k)
		}
		delete(keys, k)
	}
	for _, id := range ids {
		waitState(t, f, id, queue.TaskDone)
	}
}
