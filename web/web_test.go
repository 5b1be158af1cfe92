package web_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
	"github.com/esync/queue/web"
)

// fixture is a migrated queue on a database of its own, its dashboard on a
// loopback server, and a client that keeps cookies and does not follow
// redirects.
type fixture struct {
	ctx    context.Context
	driver *queue.PostgresDriver
	tm     *queue.TaskManager
	srv    *httptest.Server
	client *http.Client
	logs   *syncBuffer
}

func newFixture(t *testing.T, opts ...web.Option) *fixture {
	t.Helper()
	d := queuetest.NewDriver(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	logs := &syncBuffer{}
	opts = append([]web.Option{web.WithLogger(slog.New(slog.NewTextHandler(logs, nil)))}, opts...)
	mux := http.NewServeMux()
	mux.Handle("/esync/", web.Handler(d, opts...))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &fixture{ctx: ctx, driver: d, tm: queue.NewTaskManager(d), srv: srv, client: client, logs: logs}
}

// syncBuffer is a log sink that handlers may write to concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// get fetches a dashboard path and returns the status and body.
func (f *fixture) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := f.client.Get(f.srv.URL + "/esync" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// post sends a form to a dashboard path.
func (f *fixture) post(t *testing.T, path string, form url.Values, header ...string) (int, string, *http.Response) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/esync"+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// token loads a page with a form and returns its CSRF token (the client
// now has the matching cookie).
func (f *fixture) token(t *testing.T, path string) string {
	t.Helper()
	status, body := f.get(t, path)
	m := csrfField.FindStringSubmatch(body)
	if status != http.StatusOK || m == nil {
		t.Fatalf("GET %s: %d, no CSRF field:\n%s", path, status, body)
	}
	return m[1]
}

// failedTask adds a task and makes it FAILED through a claim.
func (f *fixture) failedTask(t *testing.T, name, key string) int64 {
	t.Helper()
	id, err := f.tm.Add(f.ctx, name, key, map[string]any{"customer": key})
	if err != nil {
		t.Fatal(err)
	}
	claimed, err := f.driver.Claim(f.ctx, queue.ClaimParams{Names: []string{name}, Limit: 1, Lease: time.Minute})
	if err != nil || len(claimed) != 1 || claimed[0].ID != id {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	lost, err := f.driver.Finish(f.ctx, []queue.Completion{{Lease: claimed[0].Lease, State: queue.TaskFailed, Message: "CRM said 500"}})
	if err != nil || len(lost) != 0 {
		t.Fatalf("finish: %v %v", lost, err)
	}
	return id
}

// snapshot is every task's id, state and attempts, to show nothing changed.
func (f *fixture) snapshot(t *testing.T) string {
	t.Helper()
	tasks, err := f.driver.ListTasks(f.ctx, queue.TaskFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, task := range tasks {
		fmt.Fprintf(&b, "%d %s %d %q\n", task.ID, task.State, task.Attempt, task.Message)
	}
	return b.String()
}

func (f *fixture) state(t *testing.T, id int64) queue.TaskState {
	t.Helper()
	task, err := f.driver.GetTask(f.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return task.State
}

func TestPagesRenderUnderAPrefix(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	failed := f.failedTask(t, "crm.sync", "crm:customer:1")
	if _, err := f.tm.Add(f.ctx, "email.send", "email:welcome:2", nil); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string][]string{
		"/":                            {"<h1>Overview</h1>", `<svg class="chart"`, "crm.sync", "email.send", "processes alive"},
		"/tasks":                       {`href="/esync/tasks/` + fmt.Sprint(failed) + `"`, "crm:customer:1", "CRM said 500"},
		"/tasks?state=FAILED":          {"crm:customer:1"},
		"/tasks/" + fmt.Sprint(failed): {"CRM said 500", "&#34;customer&#34;", `action="/esync/tasks/` + fmt.Sprint(failed) + `/retry"`, "Not superseded"},
		"/streams":                     {"No streams reported."},
		"/schedules":                   {"No schedule has fired", "not its spec"},
		"/cdc":                         {"No CDC controller", "not recorded by this queue"},
		"/processes":                   {"No process is running."},
		"/static/style.css":            {"--accent"},
	} {
		status, body := f.get(t, path)
		if status != http.StatusOK {
			t.Errorf("GET %s: %d\n%s", path, status, body)
			continue
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s: no %q in the page", path, w)
			}
		}
	}
	if status, body := f.get(t, "/tasks?state=READY"); status != http.StatusOK || strings.Contains(body, "crm:customer:1") || !strings.Contains(body, "email:welcome:2") {
		t.Errorf("READY filter: %d, shows the failed task or not the ready one", status)
	}
}

func TestActionsNeedTheCSRFToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.failedTask(t, "crm.sync", "crm:customer:1")
	path := fmt.Sprintf("/tasks/%d/retry", id)
	token := f.token(t, fmt.Sprintf("/tasks/%d", id))
	before := f.snapshot(t)

	// No token; a wrong token; the right token from a client without the
	// cookie; a browser saying the form came from another site.
	if status, _, _ := f.post(t, path, url.Values{}); status != http.StatusForbidden {
		t.Errorf("no token: %d, want 403", status)
	}
	if status, _, _ := f.post(t, path, url.Values{"csrf": {token + "x"}}); status != http.StatusForbidden {
		t.Errorf("wrong token: %d, want 403", status)
	}
	other := &http.Client{}
	resp, err := other.PostForm(f.srv.URL+"/esync"+path, url.Values{"csrf": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("token without its cookie: %d, want 403", resp.StatusCode)
	}
	if status, _, _ := f.post(t, path, url.Values{"csrf": {token}}, "Sec-Fetch-Site", "cross-site"); status != http.StatusForbidden {
		t.Errorf("cross-site request: %d, want 403", status)
	}
	if status, _ := f.get(t, path); status < 400 {
		t.Errorf("GET of an action: %d, want a 4xx", status)
	}
	if after := f.snapshot(t); after != before {
		t.Fatalf("refused requests changed tasks:\nbefore:\n%safter:\n%s", before, after)
	}

	status, _, resp := f.post(t, path, url.Values{"csrf": {token}})
	if status != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), fmt.Sprintf("/esync/tasks/%d?notice=", id)) {
		t.Fatalf("retry with the token: %d to %q", status, resp.Header.Get("Location"))
	}
	if s := f.state(t, id); s != queue.TaskReady {
		t.Fatalf("retried task is %s, want READY", s)
	}
	if !strings.Contains(f.logs.String(), fmt.Sprintf("action=retry task=%d", id)) {
		t.Errorf("the retry was not logged:\n%s", f.logs.String())
	}
	// A second retry of a task that is READY now is refused with a reason.
	if status, body, _ := f.post(t, path, url.Values{"csrf": {token}}); status != http.StatusConflict || !strings.Contains(body, "is READY") {
		t.Errorf("retry of a READY task: %d\n%s", status, body)
	}
	// Cancel it instead.
	if status, _, _ := f.post(t, fmt.Sprintf("/tasks/%d/cancel", id), url.Values{"csrf": {token}}); status != http.StatusSeeOther {
		t.Errorf("cancel: %d", status)
	}
	if s := f.state(t, id); s != queue.TaskCancelled {
		t.Fatalf("cancelled task is %s", s)
	}
}

func TestBasicAuth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.WithBasicAuth("ops", "s3cret:with colon"))
	id := f.failedTask(t, "crm.sync", "crm:customer:1")
	for _, creds := range [][2]string{{"", ""}, {"ops", "wrong"}, {"other", "s3cret:with colon"}, {"ops", "s3cret:with colo"}} {
		req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/esync/tasks", nil)
		if creds[0] != "" {
			req.SetBasicAuth(creds[0], creds[1])
		}
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("credentials %q: %d, want 401 with a challenge", creds, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+fmt.Sprintf("/esync/tasks/%d/retry", id), nil)
	req.SetBasicAuth("ops", "wrong")
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || f.state(t, id) != queue.TaskFailed {
		t.Errorf("POST with a wrong password: %d, task %s", resp.StatusCode, f.state(t, id))
	}
	req, _ = http.NewRequest(http.MethodGet, f.srv.URL+"/esync/", nil)
	req.SetBasicAuth("ops", "s3cret:with colon")
	resp, err = f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("right credentials: %d", resp.StatusCode)
	}
	if strings.Contains(f.logs.String(), "s3cret") {
		t.Errorf("the password reached the log")
	}
	if n := strings.Count(f.logs.String(), "wrong credentials"); n != 4 {
		t.Errorf("%d failed logins logged, want 4:\n%s", n, f.logs.String())
	}
}

func TestReadOnlyRefusesActions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.WithReadOnly())
	id := f.failedTask(t, "crm.sync", "crm:customer:1")
	status, body := f.get(t, fmt.Sprintf("/tasks/%d", id))
	if status != http.StatusOK || strings.Contains(body, "/retry") || !strings.Contains(body, "read-only") {
		t.Fatalf("read-only task page: %d, has a retry form or no read-only badge", status)
	}
	// The cookie from the page above; the token of a writable dashboard
	// would not be accepted either, but read-only refuses before it looks.
	for _, path := range []string{fmt.Sprintf("/tasks/%d/retry", id), fmt.Sprintf("/tasks/%d/cancel", id), "/tasks/bulk"} {
		status, body, _ := f.post(t, path, url.Values{"csrf": {"anything"}, "action": {"retry"}, "up_to": {"99"}, "confirm": {"yes"}})
		if status != http.StatusForbidden || !strings.Contains(body, "This dashboard is read-only") {
			t.Errorf("POST %s: %d, want 403 saying the dashboard is read-only\n%s", path, status, body)
		}
	}
	if s := f.state(t, id); s != queue.TaskFailed {
		t.Fatalf("task is %s after refused actions", s)
	}
}

func TestBadInputGetsAClear4xx(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.failedTask(t, "crm.sync", "crm:customer:1")
	if _, err := f.tm.Add(f.ctx, "crm.sync", "crm:customer:2", nil); err != nil {
		t.Fatal(err)
	}
	before := f.snapshot(t)
	for path, want := range map[string]int{
		"/tasks/abc":                             http.StatusBadRequest,
		"/tasks/-3":                              http.StatusBadRequest,
		"/tasks/99999999999999999999":            http.StatusBadRequest,
		"/tasks/424242":                          http.StatusNotFound,
		"/tasks?state=RUNNING":                   http.StatusBadRequest,
		"/tasks?state=READY&state=FAILED":        http.StatusBadRequest,
		"/tasks?key=a%00b":                       http.StatusBadRequest,
		"/tasks?key=%ff":                         http.StatusBadRequest,
		"/tasks?name=" + strings.Repeat("n", 65): http.StatusBadRequest,
		"/tasks?match=regex&key=a":               http.StatusBadRequest,
		"/tasks?after=yesterday":                 http.StatusBadRequest,
		"/tasks?after=2026-01-02T10:00&before=2026-01-01T10:00": http.StatusBadRequest,
		"/tasks?limit=100000":       http.StatusBadRequest,
		"/tasks?before_id=x":        http.StatusBadRequest,
		"/tasks/bulk?action=delete": http.StatusBadRequest,
		"/nowhere":                  http.StatusNotFound,
		"/tasks?key=%27%3B+DROP+TABLE+message_queue%3B+--&match=prefix": http.StatusOK,
		"/tasks?name=%3Cscript%3Ealert(1)%3C%2Fscript%3E":               http.StatusOK,
	} {
		status, body := f.get(t, path)
		if status != want {
			t.Errorf("GET %s: %d, want %d\n%s", path, status, want, body)
		}
		if strings.Contains(body, "<script>alert(1)") {
			t.Errorf("GET %s echoes markup unescaped", path)
		}
		if want >= 400 && want != 404 && !strings.Contains(body, `id="error"`) {
			t.Errorf("GET %s: the page has no error message", path)
		}
	}
	token := f.token(t, fmt.Sprintf("/tasks/%d", id))
	for path, form := range map[string]url.Values{
		"/tasks/424242/retry":     {},
		"/tasks/abc/cancel":       {},
		"/tasks/bulk":             {"action": {"delete"}, "up_to": {"5"}, "confirm": {"yes"}},
		"/tasks/bulk?x=1":         {"action": {"retry"}, "up_to": {"-1"}, "confirm": {"yes"}},
		"/tasks/bulk?unconfirmed": {"action": {"retry"}, "up_to": {"99"}},
		"/tasks/bulk?badfilter":   {"action": {"retry"}, "up_to": {"99"}, "confirm": {"yes"}, "state": {"NOPE"}},
		"/streams/%09x/pause":     {},
	} {
		form.Set("csrf", token)
		status, body, _ := f.post(t, path, form)
		if status < 400 || status >= 500 && status != http.StatusNotImplemented {
			t.Errorf("POST %s: %d, want a 4xx\n%s", path, status, body)
		}
	}
	if after := f.snapshot(t); after != before {
		t.Fatalf("bad input changed tasks:\nbefore:\n%safter:\n%s", before, after)
	}
	if s := f.state(t, id); s != queue.TaskFailed {
		t.Fatalf("task %d is %s", id, s)
	}
}

func TestBulkRetryConfirmsACount(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var ids []int64
	for i := range 3 {
		ids = append(ids, f.failedTask(t, "crm.sync", fmt.Sprintf("crm:customer:%d", i)))
	}
	other := f.failedTask(t, "email.send", "email:1")
	status, body := f.get(t, "/tasks/bulk?action=retry&name=crm.sync")
	if status != http.StatusOK || !strings.Contains(body, `data-count="3"`) {
		t.Fatalf("preview: %d\n%s", status, body)
	}
	if f.state(t, ids[0]) != queue.TaskFailed {
		t.Fatal("the preview changed a task")
	}
	m := regexp.MustCompile(`name="up_to" value="(\d+)"`).FindStringSubmatch(body)
	token := csrfField.FindStringSubmatch(body)[1]
	status, _, resp := f.post(t, "/tasks/bulk", url.Values{"csrf": {token}, "action": {"retry"}, "up_to": {m[1]},
		"confirm": {"yes"}, "name": {"crm.sync"}})
	if status != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "notice=3+tasks+retried") {
		t.Fatalf("apply: %d to %s", status, resp.Header.Get("Location"))
	}
	for _, id := range ids {
		if s := f.state(t, id); s != queue.TaskReady {
			t.Errorf("task %d is %s, want READY", id, s)
		}
	}
	if s := f.state(t, other); s != queue.TaskFailed {
		t.Errorf("task of another name is %s", s)
	}
	if !strings.Contains(f.logs.String(), `action="bulk retry"`) || !strings.Contains(f.logs.String(), "changed=3") {
		t.Errorf("the bulk action was not logged:\n%s", f.logs.String())
	}

	// Bulk cancel of the READY tasks of a key prefix: the three just retried.
	status, body = f.get(t, "/tasks/bulk?action=cancel&key=crm:customer:&match=prefix&state=READY")
	if status != http.StatusOK || !strings.Contains(body, `data-count="3"`) {
		t.Fatalf("cancel preview: %d\n%s", status, body)
	}
	m = regexp.MustCompile(`name="up_to" value="(\d+)"`).FindStringSubmatch(body)
	status, _, _ = f.post(t, "/tasks/bulk", url.Values{"csrf": {token}, "action": {"cancel"}, "up_to": {m[1]},
		"confirm": {"yes"}, "key": {"crm:customer:"}, "match": {"prefix"}, "state": {"READY"}})
	if status != http.StatusSeeOther {
		t.Fatalf("cancel: %d", status)
	}
	for _, id := range ids {
		if s := f.state(t, id); s != queue.TaskCancelled {
			t.Errorf("task %d is %s, want CANCELLED", id, s)
		}
	}
}

// streamBoard is a stream registry and control held in memory: what a
// process registry would report, to show that the pages light up.
type streamBoard struct {
	mu     sync.Mutex
	paused map[string]bool
}

func (s *streamBoard) DashboardStreams(context.Context) ([]queue.DashboardStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []queue.DashboardStream{{Name: "crm", Concurrency: 4, Running: 1, Paused: s.paused["crm"], Names: []string{"crm.sync"}}}, nil
}

func (s *streamBoard) PauseStream(_ context.Context, name, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name != "crm" {
		return fmt.Errorf("no stream %q", name)
	}
	s.paused[name] = true
	return nil
}

func (s *streamBoard) ResumeStream(_ context.Context, name string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := s.paused[name]
	s.paused[name] = false
	return was, nil
}

func (s *streamBoard) DashboardProcesses(context.Context) ([]queue.DashboardProcess, error) {
	return []queue.DashboardProcess{{ID: "p1", Host: "worker-1", PID: 42, Streams: []string{"crm"}, Heartbeat: time.Now()}}, nil
}

func TestCapabilitiesLightUpWhenGiven(t *testing.T) {
	t.Parallel()
	board := &streamBoard{paused: map[string]bool{}}
	f := newFixture(t, web.WithStreams(board), web.WithStreamControl(board), web.WithProcesses(board))
	status, body := f.get(t, "/streams")
	if status != http.StatusOK || strings.Contains(body, "does not record") || !strings.Contains(body, `action="/esync/streams/crm/pause"`) {
		t.Fatalf("streams page with a registry: %d\n%s", status, body)
	}
	token := csrfField.FindStringSubmatch(body)[1]
	if status, _, _ := f.post(t, "/streams/crm/pause", url.Values{"csrf": {token}}); status != http.StatusSeeOther {
		t.Fatalf("pause: %d", status)
	}
	if !board.paused["crm"] {
		t.Fatal("the stream was not paused")
	}
	if _, body := f.get(t, "/streams"); !strings.Contains(body, "paused") || !strings.Contains(body, "/streams/crm/resume") {
		t.Error("the paused stream is not shown as paused")
	}
	if status, _, _ := f.post(t, "/streams/other/pause", url.Values{"csrf": {token}}); status != http.StatusConflict {
		t.Errorf("pause of an unknown stream: %d", status)
	}
	if _, body := f.get(t, "/processes"); !strings.Contains(body, "worker-1") {
		t.Error("the processes page does not list the process")
	}
	if _, body := f.get(t, "/"); !strings.Contains(body, "processes alive") {
		t.Error("the overview does not count processes")
	}
}

func TestServeServesUntilTheContextEnds(t *testing.T) {
	t.Parallel()
	d := queuetest.NewDriver(t)
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- web.Serve(ctx, d, "127.0.0.1:0", web.WithReadOnly(), web.OnListening(func(a string) { addr <- a }),
			web.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("Serve returned before listening: %v", err)
	}
	resp, err := http.Get(base + "/tasks")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `href="/tasks"`) {
		t.Fatalf("GET /tasks: %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after the context ended: %v", err)
	}
	if _, err := http.Get(base + "/"); err == nil {
		t.Fatal("still serving after Serve returned")
	}
	if err := web.Serve(context.Background(), d, "not an address"); err == nil {
		t.Fatal("Serve accepted a bad address")
	}
}

func TestMountedUnderStripPrefixOrWithPrefix(t *testing.T) {
	t.Parallel()
	d := queuetest.NewDriver(t)
	if _, err := queue.NewTaskManager(d).Add(context.Background(), "crm.sync", "crm:customer:1", nil); err != nil {
		t.Fatal(err)
	}
	quiet := web.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	mux := http.NewServeMux()
	mux.Handle("/stripped/", http.StripPrefix("/stripped", web.Handler(d, quiet)))
	mux.Handle("/ops/queue/", web.Handler(d, quiet))
	mux.Handle("/", web.Handler(d, quiet, web.WithPrefix("/")))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for path, link := range map[string]string{
		"/stripped/tasks":  `href="/stripped/tasks/1"`,
		"/ops/queue/tasks": `href="/ops/queue/tasks/1"`,
		"/tasks":           `href="/tasks/1"`,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), link) {
			t.Errorf("GET %s: %d, no %s", path, resp.StatusCode, link)
		}
	}
}

// A task's detail page lists the messages of its attempts that did not
// succeed, with their numbers, and marks where a long supersede chain is
// cut.
func TestTaskPageShowsAttemptErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id, err := f.tm.Add(f.ctx, "crm.sync", "crm:customer:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []struct {
		state   queue.TaskState
		message string
	}{{queue.TaskRetry, "CRM said 503"}, {queue.TaskRetry, "connection <reset>"}, {queue.TaskDone, "synced"}} {
		claimed, err := f.driver.Claim(f.ctx, queue.ClaimParams{Names: []string{"crm.sync"}, Limit: 1, Lease: time.Minute})
		if err != nil || len(claimed) != 1 {
			t.Fatalf("claim: %v %v", claimed, err)
		}
		if lost, err := f.driver.Finish(f.ctx, []queue.Completion{{Lease: claimed[0].Lease, State: o.state, Message: o.message}}); err != nil || len(lost) != 0 {
			t.Fatalf("finish: %v %v", lost, err)
		}
	}
	status, body := f.get(t, fmt.Sprintf("/tasks/%d", id))
	row := regexp.MustCompile(`<tr><td class="num">(\d+)</td><td>[^<]+</td><td><span class="state retry">RETRY</span></td><td><pre>([^<]*)</pre></td></tr>`)
	var got []string
	for _, m := range row.FindAllStringSubmatch(body, -1) {
		got = append(got, m[1]+" "+m[2])
	}
	if status != http.StatusOK || strings.Join(got, ", ") != "1 CRM said 503, 2 connection &lt;reset&gt;" {
		t.Fatalf("GET /tasks/%d: %d, attempts %q:\n%s", id, status, got, body)
	}

	var chain []int64
	for range 13 {
		id, err := f.tm.Add(f.ctx, "crm.sync", "crm:customer:2", nil)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, id)
	}
	status, body = f.get(t, fmt.Sprintf("/tasks/%d", chain[0]))
	if status != http.StatusOK || !strings.Contains(body, "… 1 more … → <a") || !strings.Contains(body, fmt.Sprintf("task %d</a> (READY).", chain[12])) ||
		!strings.Contains(body, `<p id="errors">None.</p>`) {
		t.Fatalf("GET /tasks/%d: %d, want the chain cut after 10 links and its end:\n%s", chain[0], status, body)
	}
}
