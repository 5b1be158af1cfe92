package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
)

// cdcData builds the data of a CDC task for the customer with id; row is
// left out for a delete.
func cdcData(id int, action, name, email, tier string) map[string]any {
	d := map[string]any{"object_id": fmt.Sprint(id), "action": action, "hash": "h-" + action}
	if action != "delete" {
		d["row"] = map[string]any{"id": id, "name": name, "email": email, "tier": tier}
	}
	return d
}

// crmTask builds a task as the queue hands it to the action, recording
// RetryAfter calls. data may be raw JSON ([]byte) or a value to encode.
func crmTask(t *testing.T, data any) queue.Task {
	t.Helper()
	raw, ok := data.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(data); err != nil {
			t.Fatal(err)
		}
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m) // stays nil for data that is not an object
	return queue.WithRetryNotes(queue.Task{ID: 1, Key: "customer", Name: "crm.sync", Attempt: 1, RawData: raw, Data: m})
}

// actionFor returns a crmAction for s with testToken.
func actionFor(t *testing.T, s *CRMServer) *crmAction {
	t.Helper()
	a, err := newCRMAction(s.URL(), testToken, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// expectResult fails the test unless res is want and msg holds every
// fragment; msg must never hold the token.
func expectResult(t *testing.T, res queue.TaskResult, msg queue.TaskMessage, want queue.TaskResult, fragments ...string) {
	t.Helper()
	if res != want {
		t.Fatalf("result %s (%s), want %s", res, msg, want)
	}
	for _, f := range fragments {
		if !strings.Contains(string(msg), f) {
			t.Errorf("message %q does not contain %q", msg, f)
		}
	}
	if strings.Contains(string(msg), testToken) {
		t.Errorf("message %q shows the token", msg)
	}
}

// wantStatuses fails the test unless s answered exactly these statuses.
func wantStatuses(t *testing.T, s *CRMServer, want map[int]int) {
	t.Helper()
	if got := s.Stats().ByStatus; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("CRM answered %v, want %v", got, want)
	}
}

// create, update and delete each take one request when the CRM agrees.
func TestCRMActionCreateUpdateDelete(t *testing.T) {
	s := startTestCRM(t, CRMConfig{})
	a := actionFor(t, s)

	res, msg := a.Do(crmTask(t, cdcData(42, "create", "Ann Lee", "ann@example.com", "gold")))
	expectResult(t, res, msg, queue.TaskResultSuccess, "created contact 42", "201", "CRM id ct_")
	got := s.Snapshot()["42"]
	if got.Name != "Ann Lee" || got.Email != "ann@example.com" || got.Tier != "gold" {
		t.Fatalf("CRM holds %+v", got)
	}

	res, msg = a.Do(crmTask(t, cdcData(42, "update", "Ann Park", "ann@park.example", "")))
	expectResult(t, res, msg, queue.TaskResultSuccess, "updated contact 42", "200")
	if got := s.Snapshot()["42"]; got.Name != "Ann Park" || got.Email != "ann@park.example" || got.Tier != "" {
		t.Fatalf("CRM holds %+v after the update", got)
	}

	res, msg = a.Do(crmTask(t, cdcData(42, "delete", "", "", "")))
	expectResult(t, res, msg, queue.TaskResultSuccess, "deleted contact 42", "204")
	if len(s.Snapshot()) != 0 {
		t.Fatalf("CRM still holds %v", s.Snapshot())
	}
	wantStatuses(t, s, map[int]int{201: 1, 200: 1, 204: 1})
}

// A create the CRM already has (its answer got lost) becomes an update.
func TestCRMActionCreateConflictBecomesPut(t *testing.T) {
	s := startTestCRM(t, CRMConfig{})
	a := actionFor(t, s)
	wantStatus(t, send(t, s, testToken, "POST", "/v1/contacts", `{"external_id":"7","name":"Old Name"}`), http.StatusCreated)
	crmID := s.Snapshot()["7"].ID

	res, msg := a.Do(crmTask(t, cdcData(7, "create", "New Name", "new@example.com", "silver")))
	expectResult(t, res, msg, queue.TaskResultSuccess, "already existed", "409", "updated it instead", "200")
	got := s.Snapshot()["7"]
	if got.ID != crmID || got.Name != "New Name" || got.Email != "new@example.com" || got.Tier != "silver" {
		t.Fatalf("CRM holds %+v", got)
	}
	wantStatuses(t, s, map[int]int{201: 1, 409: 1, 200: 1})
}

// An update of a contact the CRM does not have becomes a create.
func TestCRMActionUpdateMissingBecomesPost(t *testing.T) {
	s := startTestCRM(t, CRMConfig{})
	res, msg := actionFor(t, s).Do(crmTask(t, cdcData(8, "update", "Eight", "eight@example.com", "free")))
	expectResult(t, res, msg, queue.TaskResultSuccess, "missing from the CRM", "404", "created it instead", "201")
	if got := s.Snapshot()["8"]; got.Name != "Eight" || got.Tier != "free" {
		t.Fatalf("CRM holds %+v", got)
	}
	wantStatuses(t, s, map[int]int{404: 1, 201: 1})
}

// Deleting a contact that is already gone is done.
func TestCRMActionDeleteMissingIsDone(t *testing.T) {
	s := startTestCRM(t, CRMConfig{})
	res, msg := actionFor(t, s).Do(crmTask(t, cdcData(9, "delete", "", "", "")))
	expectResult(t, res, msg, queue.TaskResultSuccess, "already gone", "404")
	wantStatuses(t, s, map[int]int{404: 1})
}

// A 404 that is not the CRM's "no such contact" (a wrong base URL) is not
// taken for one: delete does not pretend success, update does not create.
func TestCRMActionForeign404IsPermanent(t *testing.T) {
	s := startTestCRM(t, CRMConfig{})
	a, err := newCRMAction(s.URL()+"/api", testToken, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, action := range []string{"delete", "update", "create"} {
		res, msg := a.Do(crmTask(t, cdcData(1, action, "One", "", "")))
		expectResult(t, res, msg, queue.TaskResultPermanentFailure, "404", "check the CRM URL")
	}
	wantStatuses(t, s, map[int]int{404: 3})
}

// Each answer the CRM can give lands in the right result, with the CRM's
// error text in the message.
func TestCRMActionClassification(t *testing.T) {
	cases := []struct {
		name      string
		cfg       CRMConfig
		data      map[string]any
		want      queue.TaskResult
		fragments []string
	}{
		{"503", CRMConfig{FaultRate: 1, FaultStatuses: []int{503}}, cdcData(1, "create", "A", "", ""),
			queue.TaskResultRetryFailure, []string{"503 Service Unavailable", "POST /v1/contacts", "injected fault", "will retry"}},
		{"500", CRMConfig{FaultRate: 1, FaultStatuses: []int{500}}, cdcData(1, "update", "A", "", ""),
			queue.TaskResultRetryFailure, []string{"500 Internal Server Error", "PUT /v1/contacts/1", "will retry"}},
		{"502", CRMConfig{FaultRate: 1, FaultStatuses: []int{502}}, cdcData(1, "delete", "", "", ""),
			queue.TaskResultRetryFailure, []string{"502", "DELETE /v1/contacts/1"}},
		{"408", CRMConfig{FaultRate: 1, FaultStatuses: []int{408}}, cdcData(1, "create", "A", "", ""),
			queue.TaskResultRetryFailure, []string{"408"}},
		{"400 invalid email", CRMConfig{}, cdcData(1, "create", "A", "not-an-email", ""),
			queue.TaskResultPermanentFailure, []string{"400 Bad Request", `email "not-an-email" is not a valid address`, "validation_failed"}},
		{"400 missing name", CRMConfig{}, cdcData(1, "update", "", "a@example.com", ""),
			queue.TaskResultPermanentFailure, []string{"400", "name is required"}},
		{"401 wrong token", CRMConfig{Token: "tok-other"}, cdcData(1, "create", "A", "", ""),
			queue.TaskResultPermanentFailure, []string{"401 Unauthorized", "missing or invalid bearer token"}},
		{"403", CRMConfig{FaultRate: 1, FaultStatuses: []int{403}}, cdcData(1, "delete", "", "", ""),
			queue.TaskResultPermanentFailure, []string{"403 Forbidden", "injected fault"}},
		{"422", CRMConfig{FaultRate: 1, FaultStatuses: []int{422}}, cdcData(1, "create", "A", "", ""),
			queue.TaskResultPermanentFailure, []string{"422 Unprocessable Entity"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := startTestCRM(t, c.cfg)
			task := crmTask(t, c.data)
			res, msg := actionFor(t, s).Do(task)
			expectResult(t, res, msg, c.want, c.fragments...)
			if d, ok := queue.RequestedRetryDelay(task); ok {
				t.Errorf("asked for a retry after %s without a Retry-After header", d)
			}
			if st := s.Stats(); st.Requests != 1 {
				t.Errorf("%d requests, want 1", st.Requests)
			}
			if len(s.Snapshot()) != 0 {
				t.Errorf("CRM holds %v", s.Snapshot())
			}
		})
	}
}

// A 429 is a retry no sooner than the CRM's Retry-After.
func TestCRMActionRateLimitedHonoursRetryAfter(t *testing.T) {
	clock := newFakeClock()
	s := startTestCRM(t, CRMConfig{RateLimit: 1, Now: clock.Now})
	a := actionFor(t, s)
	res, msg := a.Do(crmTask(t, cdcData(1, "create", "A", "", "")))
	expectResult(t, res, msg, queue.TaskResultSuccess)

	task := crmTask(t, cdcData(2, "create", "B", "", ""))
	res, msg = a.Do(task)
	expectResult(t, res, msg, queue.TaskResultRetryFailure, "429 Too Many Requests", "rate_limited", "no sooner than 1s")
	if d, ok := queue.RequestedRetryDelay(task); !ok || d != time.Second {
		t.Errorf("requested retry delay %s (%v), want 1s", d, ok)
	}
	if _, ok := s.Snapshot()["2"]; ok {
		t.Error("the rate-limited create was applied")
	}

	clock.Advance(time.Second)
	task = crmTask(t, cdcData(2, "create", "B", "", ""))
	res, msg = a.Do(task)
	expectResult(t, res, msg, queue.TaskResultSuccess)
	if _, ok := queue.RequestedRetryDelay(task); ok {
		t.Error("a success asked for a retry delay")
	}
}

// Retry-After in seconds or as an HTTP date, capped; garbage is ignored.
func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	cases := map[string]struct {
		d  time.Duration
		ok bool
	}{
		"":                              {0, false},
		"1":                             {time.Second, true},
		" 30 ":                          {30 * time.Second, true},
		"0":                             {0, true},
		"-5":                            {0, false},
		"soon":                          {0, false},
		"99999999":                      {maxCRMRetryAfter, true},
		"Fri, 14 Mar 2025 09:02:00 GMT": {2 * time.Minute, true},
		"Fri, 14 Mar 2025 08:00:00 GMT": {0, true},
	}
	for v, want := range cases {
		h := http.Header{}
		if v != "" {
			h.Set("Retry-After", v)
		}
		if d, ok := parseRetryAfter(h, now); d != want.d || ok != want.ok {
			t.Errorf("Retry-After %q: %s %v, want %s %v", v, d, ok, want.d, want.ok)
		}
	}
}

// No answer within the client timeout is a retry; the request hangs until
// the client gives up, so the outcome does not depend on timing.
func TestCRMActionTimeoutIsRetry(t *testing.T) {
	s := startTestCRM(t, CRMConfig{HangRate: 1})
	a, err := newCRMAction(s.URL(), testToken, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	res, msg := a.Do(crmTask(t, cdcData(1, "create", "A", "", "")))
	expectResult(t, res, msg, queue.TaskResultRetryFailure, "no answer to POST /v1/contacts", "did not answer within 50ms")
}

// The run's own deadline bounds the request too, and is named as the cause.
func TestCRMActionTaskDeadlineIsRetry(t *testing.T) {
	s := startTestCRM(t, CRMConfig{HangRate: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	task := crmTask(t, cdcData(1, "update", "A", "", "")).WithContext(ctx)
	res, msg := actionFor(t, s).Do(task)
	expectResult(t, res, msg, queue.TaskResultRetryFailure, "no answer to PUT /v1/contacts/1", "deadline passed or it was cancelled")
}

// A run already cancelled sends nothing.
func TestCRMActionCancelledRunSendsNothing(t *testing.T) {
	s := startTestCRM(t, CRMConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, msg := actionFor(t, s).Do(crmTask(t, cdcData(1, "create", "A", "", "")).WithContext(ctx))
	expectResult(t, res, msg, queue.TaskResultRetryFailure, "not sent", "context canceled")
	if st := s.Stats(); st.Requests != 0 {
		t.Errorf("%d requests sent", st.Requests)
	}
}

// A CRM that cannot be reached is a retry.
func TestCRMActionNetworkErrorIsRetry(t *testing.T) {
	s, err := StartCRM(CRMConfig{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	a := actionFor(t, s)
	s.Close()
	res, msg := a.Do(crmTask(t, cdcData(1, "delete", "", "", "")))
	expectResult(t, res, msg, queue.TaskResultRetryFailure, "no answer to DELETE /v1/contacts/1", "will retry")
}

// Task data the action cannot use fails the task before anything is sent.
func TestCRMActionBadTaskData(t *testing.T) {
	s := startTestCRM(t, CRMConfig{})
	a := actionFor(t, s)
	cases := map[string]struct {
		data     string
		fragment string
	}{
		"not an object":        {`[1,2]`, "not a CDC task object"},
		"not JSON":             {`{"object_id":`, "not a CDC task object"},
		"missing object_id":    {`{"action":"delete"}`, "object_id is missing"},
		"empty object_id":      {`{"object_id":" ","action":"delete"}`, "object_id is missing"},
		"object_id an object":  {`{"object_id":{"id":1},"action":"delete"}`, "neither a string nor a number"},
		"missing action":       {`{"object_id":"1"}`, "action is missing"},
		"unknown action":       {`{"object_id":"1","action":"upsert","row":{"name":"A"}}`, `unknown action "upsert"`},
		"create without row":   {`{"object_id":"1","action":"create"}`, "row is missing for create"},
		"update with null row": {`{"object_id":"1","action":"update","row":null}`, "row is missing for update"},
		"row id mismatch":      {`{"object_id":"1","action":"update","row":{"id":2,"name":"A"}}`, "row id 2 does not match object_id 1"},
		"name not a string":    {`{"object_id":"1","action":"create","row":{"id":1,"name":5}}`, "not a CDC task object"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			res, msg := a.Do(crmTask(t, []byte(c.data)))
			expectResult(t, res, msg, queue.TaskResultPermanentFailure, "not sent: bad task data", c.fragment)
		})
	}
	if st := s.Stats(); st.Requests != 0 {
		t.Errorf("bad task data sent %d requests", st.Requests)
	}
}

// object_id may be a JSON number, and the row may carry extra columns.
func TestCRMActionNumericObjectID(t *testing.T) {
	s := startTestCRM(t, CRMConfig{})
	data := []byte(`{"object_id": 42, "action": "create", "hash": "x",
		"row": {"id": 42, "name": "Ann", "email": null, "tier": "gold", "created_at": "2025-01-01"}}`)
	res, msg := actionFor(t, s).Do(crmTask(t, data))
	expectResult(t, res, msg, queue.TaskResultSuccess, "created contact 42")
	if got := s.Snapshot()["42"]; got.Name != "Ann" || got.Email != "" || got.Tier != "gold" {
		t.Fatalf("CRM holds %+v", got)
	}
}

// The token never reaches a message, even when the far side echoes it, and
// printing the action hides it.
func TestCRMActionNeverShowsToken(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeCRMError(w, http.StatusBadRequest, "echo", "you sent "+r.Header.Get("Authorization"))
	}))
	defer echo.Close()
	a, err := newCRMAction(echo.URL, testToken, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	res, msg := a.Do(crmTask(t, cdcData(1, "create", "A", "", "")))
	expectResult(t, res, msg, queue.TaskResultPermanentFailure, "you sent Bearer [redacted]")

	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		if out := fmt.Sprintf(verb, a); strings.Contains(out, testToken) {
			t.Errorf("%s shows the token: %s", verb, out)
		}
	}
	for _, bad := range []string{"", "two words", "line\nbreak"} {
		if _, err := newCRMAction(echo.URL, bad, 0); err == nil {
			t.Errorf("token %q accepted", bad)
		} else if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("error shows the token: %v", err)
		}
	}
	if _, err := newCRMAction("ftp://user:hunter2@example.com", testToken, 0); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad URL: %v", err)
	}
}

// A redirect is not followed and fails the task: the URL is wrong.
func TestCRMActionRedirectIsPermanent(t *testing.T) {
	moved := httptest.NewServer(http.RedirectHandler("https://crm.example/v1/contacts", http.StatusMovedPermanently))
	defer moved.Close()
	a, err := newCRMAction(moved.URL, testToken, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	res, msg := a.Do(crmTask(t, cdcData(1, "create", "A", "", "")))
	expectResult(t, res, msg, queue.TaskResultPermanentFailure, "301", "https://crm.example/v1/contacts", "check the CRM URL")
}

// Against a seeded CRM that faults, loses answers and rate-limits, running
// each task until it stops asking for a retry leaves the CRM exactly in
// sync, through the 409 and 404 fallbacks. Sequential requests and a fake
// clock keep every fault in the same place on every run.
func TestCRMActionConvergesThroughFaults(t *testing.T) {
	clock := newFakeClock()
	s := startTestCRM(t, CRMConfig{FaultRate: 0.3, LostAnswerRate: 0.4, RateLimit: 5, Seed: 11, Now: clock.Now})
	a := actionFor(t, s)
	run := func(data map[string]any) {
		t.Helper()
		for attempt := 1; ; attempt++ {
			task := crmTask(t, data)
			res, msg := a.Do(task)
			if res == queue.TaskResultSuccess {
				return
			}
			if res != queue.TaskResultRetryFailure || attempt == 50 {
				t.Fatalf("%v: attempt %d: %s (%s)", data, attempt, res, msg)
			}
			if d, ok := queue.RequestedRetryDelay(task); ok {
				clock.Advance(d)
			}
		}
	}
	want := map[string]Contact{}
	for i := 1; i <= 20; i++ {
		run(cdcData(i, "create", fmt.Sprintf("Customer %d", i), fmt.Sprintf("c%d@example.com", i), "free"))
		want[fmt.Sprint(i)] = Contact{Name: fmt.Sprintf("Customer %d", i), Email: fmt.Sprintf("c%d@example.com", i), Tier: "free"}
	}
	for i := 1; i <= 20; i += 3 {
		run(cdcData(i, "update", fmt.Sprintf("Customer %d v2", i), fmt.Sprintf("c%d@example.com", i), "gold"))
		want[fmt.Sprint(i)] = Contact{Name: fmt.Sprintf("Customer %d v2", i), Email: fmt.Sprintf("c%d@example.com", i), Tier: "gold"}
	}
	for i := 2; i <= 20; i += 4 {
		run(cdcData(i, "delete", "", "", ""))
		delete(want, fmt.Sprint(i))
	}
	got := map[string]Contact{}
	for id, c := range s.Snapshot() {
		got[id] = Contact{Name: c.Name, Email: c.Email, Tier: c.Tier}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("CRM holds\n%v\nwant\n%v", got, want)
	}
	st := s.Stats()
	for name, n := range map[string]int{"faults": st.Faults, "lost answers": st.LostAnswers, "rate-limited": st.RateLimited, "409s": st.ByStatus[409]} {
		if n == 0 {
			t.Errorf("no %s: the run did not exercise them (%s)", name, st)
		}
	}
	t.Log(st)
}
