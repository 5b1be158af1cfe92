package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
)

// batchOf builds a batch of tasks, one per data, with distinct ids and
// keys, each recording its RetryAfter calls. A data may be raw JSON.
func batchOf(t *testing.T, data ...any) []queue.Task {
	t.Helper()
	tasks := make([]queue.Task, len(data))
	for i, d := range data {
		tasks[i] = crmTask(t, d)
		tasks[i].ID, tasks[i].Key = int64(i+1), fmt.Sprintf("customers:%d", i+1)
	}
	return tasks
}

// batchActionFor returns a crmBatchAction for the CRM at url with testToken
// and the given client timeout.
func batchActionFor(t *testing.T, url string, timeout time.Duration) *crmBatchAction {
	t.Helper()
	a, err := newCRMAction(url, testToken, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return newCRMBatchAction(a)
}

// expectResults fails the test unless there is a result per task, each
// want, with every fragment in its message and never the token.
func expectResults(t *testing.T, got []queue.BatchResult, n int, want queue.TaskResult, fragments ...string) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%d results for %d tasks: %v", len(got), n, got)
	}
	for _, r := range got {
		expectResult(t, r.Result, r.Message, want, fragments...)
	}
}

// One call sends its tasks in one bulk request: creates and updates
// upsert (an update of a contact the CRM lacks creates it), deletes
// delete, and a delete of a contact already gone is done.
func TestCRMBatchActionSyncs(t *testing.T) {
	s := startTestCRM(t, CRMConfig{})
	b := batchActionFor(t, s.URL(), 5*time.Second)
	ctx := context.Background()

	got := b.DoBatch(ctx, batchOf(t,
		cdcData(1, "create", "Ann", "ann@example.com", "gold"),
		cdcData(2, "create", "Bo", "", "free"),
		cdcData(3, "create", "Cy", "cy@example.com", ""),
	))
	expectResults(t, got, 3, queue.TaskResultSuccess, "upserted contact", "(201 created, CRM id ct_", "in a bulk request of 3")
	if st := s.Stats(); st.Requests != 1 || st.Bulk != 1 || st.Created != 3 {
		t.Fatalf("three creates: %s", st)
	}

	got = b.DoBatch(ctx, batchOf(t,
		cdcData(1, "update", "Ann Lee", "ann@lee.example", "platinum"),
		cdcData(2, "delete", "", "", ""),
		cdcData(9, "delete", "", "", ""),
		cdcData(4, "update", "Di", "di@example.com", "pro"),
	))
	if len(got) != 4 {
		t.Fatalf("%d results for 4 tasks", len(got))
	}
	expectResult(t, got[0].Result, got[0].Message, queue.TaskResultSuccess, "upserted contact 1", "200 updated")
	expectResult(t, got[1].Result, got[1].Message, queue.TaskResultSuccess, "deleted contact 2", "204")
	expectResult(t, got[2].Result, got[2].Message, queue.TaskResultSuccess, "contact 9 was already gone", "404")
	expectResult(t, got[3].Result, got[3].Message, queue.TaskResultSuccess, "upserted contact 4", "201 created")

	want := map[string]Contact{
		"1": {Name: "Ann Lee", Email: "ann@lee.example", Tier: "platinum"},
		"3": {Name: "Cy", Email: "cy@example.com"},
		"4": {Name: "Di", Email: "di@example.com", Tier: "pro"},
	}
	gotContacts := map[string]Contact{}
	for id, c := range s.Snapshot() {
		gotContacts[id] = Contact{Name: c.Name, Email: c.Email, Tier: c.Tier}
	}
	if fmt.Sprint(gotContacts) != fmt.Sprint(want) {
		t.Fatalf("CRM holds %v, want %v", gotContacts, want)
	}
	if st := s.Stats(); st.Requests != 2 || st.Bulk != 2 || st.BulkWrites != 6 {
		t.Errorf("two calls: %s", st)
	}
}

// A record the CRM refuses fails alone, with the CRM's text; the others of
// the request are done.
func TestCRMBatchActionRecordRefused(t *testing.T) {
	s := startTestCRM(t, CRMConfig{})
	got := batchActionFor(t, s.URL(), 5*time.Second).DoBatch(context.Background(), batchOf(t,
		cdcData(1, "create", "Ann", "ann@example.com", ""),
		cdcData(2, "create", "Bo", "not-an-email", ""),
		cdcData(3, "update", "", "", ""),
		cdcData(4, "create", "Di", "", ""),
	))
	if len(got) != 4 {
		t.Fatalf("%d results", len(got))
	}
	expectResult(t, got[0].Result, got[0].Message, queue.TaskResultSuccess, "upserted contact 1")
	expectResult(t, got[1].Result, got[1].Message, queue.TaskResultPermanentFailure,
		"CRM answered 400 Bad Request to the upsert of contact 2 in a bulk request of 4", `email "not-an-email" is not a valid address [validation_failed]`)
	expectResult(t, got[2].Result, got[2].Message, queue.TaskResultPermanentFailure, "upsert of contact 3", "name is required")
	expectResult(t, got[3].Result, got[3].Message, queue.TaskResultSuccess, "upserted contact 4")
	if snap := s.Snapshot(); len(snap) != 2 {
		t.Errorf("CRM holds %v, want 1 and 4", snap)
	}
}

// Each status a record's result can carry lands in the right outcome.
func TestClassifyBulkResult(t *testing.T) {
	upsert, del := bulkOp{Op: "upsert", ExternalID: "7"}, bulkOp{Op: "delete", ExternalID: "7"}
	cases := []struct {
		name      string
		op        bulkOp
		r         bulkResult
		want      queue.TaskResult
		fragments []string
	}{
		{"201", upsert, bulkResult{ExternalID: "7", Status: 201, Code: "created", ID: "ct_1"}, queue.TaskResultSuccess, []string{"upserted contact 7", "CRM id ct_1"}},
		{"204", del, bulkResult{ExternalID: "7", Status: 204}, queue.TaskResultSuccess, []string{"deleted contact 7"}},
		{"404 to a delete", del, bulkResult{ExternalID: "7", Status: 404, Code: "not_found"}, queue.TaskResultSuccess, []string{"already gone"}},
		{"404 to an upsert", upsert, bulkResult{ExternalID: "7", Status: 404, Code: "not_found", Message: "no such list"}, queue.TaskResultPermanentFailure, []string{"404", "no such list"}},
		{"409", upsert, bulkResult{ExternalID: "7", Status: 409, Code: "conflict", Message: "being merged"}, queue.TaskResultRetryFailure, []string{"409 Conflict", "being merged [conflict]", "will retry"}},
		{"429", del, bulkResult{ExternalID: "7", Status: 429, Message: "record locked"}, queue.TaskResultRetryFailure, []string{"429", "record locked"}},
		{"503", upsert, bulkResult{ExternalID: "7", Status: 503, Message: "shard down"}, queue.TaskResultRetryFailure, []string{"503", "shard down"}},
		{"400", upsert, bulkResult{ExternalID: "7", Status: 400, Code: "validation_failed", Message: "name is required"}, queue.TaskResultPermanentFailure, []string{"400 Bad Request", "name is required"}},
		{"422", upsert, bulkResult{ExternalID: "7", Status: 422, Message: "email bounced"}, queue.TaskResultPermanentFailure, []string{"422", "email bounced"}},
		{"another record's result", upsert, bulkResult{ExternalID: "8", Status: 201}, queue.TaskResultRetryFailure, []string{`names contact "8"`, "will retry"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, msg := classifyBulkResult(c.op, c.r, 5)
			expectResult(t, res, queue.TaskMessage(msg), c.want, c.fragments...)
		})
	}
}

// A request that fails as a whole gives every task the outcome the
// single-task action gives for that answer.
func TestCRMBatchActionRequestFailure(t *testing.T) {
	cases := []struct {
		name      string
		cfg       CRMConfig
		want      queue.TaskResult
		fragments []string
	}{
		{"503", CRMConfig{FaultRate: 1, FaultStatuses: []int{503}}, queue.TaskResultRetryFailure,
			[]string{"CRM answered 503 Service Unavailable to POST /v1/contacts/batch (3 records)", "injected fault", "will retry"}},
		{"500", CRMConfig{FaultRate: 1, FaultStatuses: []int{500}}, queue.TaskResultRetryFailure, []string{"500", "will retry"}},
		{"403", CRMConfig{FaultRate: 1, FaultStatuses: []int{403}}, queue.TaskResultPermanentFailure, []string{"403 Forbidden", "injected fault"}},
		{"401", CRMConfig{Token: "tok-other"}, queue.TaskResultPermanentFailure, []string{"401 Unauthorized", "missing or invalid bearer token"}},
		{"413", CRMConfig{MaxBatch: 2}, queue.TaskResultPermanentFailure, []string{"413", "at most 2 [too_many_operations]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := startTestCRM(t, c.cfg)
			tasks := batchOf(t, cdcData(1, "create", "A", "", ""), cdcData(2, "update", "B", "", ""), cdcData(3, "delete", "", "", ""))
			got := batchActionFor(t, s.URL(), 5*time.Second).DoBatch(context.Background(), tasks)
			expectResults(t, got, 3, c.want, c.fragments...)
			for _, task := range tasks {
				if d, ok := queue.RequestedRetryDelay(task); ok {
					t.Errorf("asked for a retry after %s without a Retry-After header", d)
				}
			}
			if st := s.Stats(); st.Requests != 1 || len(s.Snapshot()) != 0 {
				t.Errorf("%d requests, CRM holds %v", st.Requests, s.Snapshot())
			}
		})
	}
}

// A 429 to the bulk request asks each task for a retry no sooner than the
// CRM's Retry-After.
func TestCRMBatchActionRateLimited(t *testing.T) {
	clock := newFakeClock()
	s := startTestCRM(t, CRMConfig{RateLimit: 1, Now: clock.Now})
	b := batchActionFor(t, s.URL(), 5*time.Second)
	expectResults(t, b.DoBatch(context.Background(), batchOf(t, cdcData(1, "create", "A", "", ""))), 1, queue.TaskResultSuccess)

	tasks := batchOf(t, cdcData(2, "create", "B", "", ""), cdcData(3, "create", "C", "", ""))
	got := b.DoBatch(context.Background(), tasks)
	expectResults(t, got, 2, queue.TaskResultRetryFailure, "429 Too Many Requests", "rate_limited", "no sooner than 1s (Retry-After)")
	for _, task := range tasks {
		if d, ok := queue.RequestedRetryDelay(task); !ok || d != time.Second {
			t.Errorf("task %s: requested retry delay %s (%v), want 1s", task.Key, d, ok)
		}
	}
	if len(s.Snapshot()) != 1 {
		t.Errorf("the rate-limited request applied: %v", s.Snapshot())
	}
}

// A lost answer is a retry of every task; the retry finds the contacts
// upserted and deleted already, and is done.
func TestCRMBatchActionLostAnswer(t *testing.T) {
	s := startTestCRM(t, CRMConfig{})
	wantStatus(t, send(t, s, testToken, "POST", "/v1/contacts", `{"external_id":"3","name":"C"}`), http.StatusCreated)
	s.mu.Lock()
	s.cfg.LostAnswerRate = 1
	s.mu.Unlock()
	b := batchActionFor(t, s.URL(), 5*time.Second)
	data := []any{cdcData(1, "create", "A", "", ""), cdcData(3, "delete", "", "", "")}
	expectResults(t, b.DoBatch(context.Background(), batchOf(t, data...)), 2, queue.TaskResultRetryFailure, "500", "the answer was lost", "will retry")
	if snap := s.Snapshot(); len(snap) != 1 || snap["1"].Name != "A" {
		t.Fatalf("CRM holds %v after the lost answer", snap)
	}

	s.mu.Lock()
	s.cfg.LostAnswerRate = 0
	s.mu.Unlock()
	got := b.DoBatch(context.Background(), batchOf(t, data...))
	expectResult(t, got[0].Result, got[0].Message, queue.TaskResultSuccess, "200 updated")
	expectResult(t, got[1].Result, got[1].Message, queue.TaskResultSuccess, "already gone")
}

// No answer is a retry of every task: a hang past the client timeout, the
// call's deadline, a CRM that is gone. A call already ended sends nothing.
func TestCRMBatchActionNoAnswer(t *testing.T) {
	data := []any{cdcData(1, "create", "A", "", ""), cdcData(2, "delete", "", "", "")}
	t.Run("client timeout", func(t *testing.T) {
		s := startTestCRM(t, CRMConfig{HangRate: 1})
		got := batchActionFor(t, s.URL(), 50*time.Millisecond).DoBatch(context.Background(), batchOf(t, data...))
		expectResults(t, got, 2, queue.TaskResultRetryFailure, "no answer to POST /v1/contacts/batch (2 records)", "did not answer within 50ms")
	})
	t.Run("call deadline", func(t *testing.T) {
		s := startTestCRM(t, CRMConfig{HangRate: 1})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		got := batchActionFor(t, s.URL(), 5*time.Second).DoBatch(ctx, batchOf(t, data...))
		expectResults(t, got, 2, queue.TaskResultRetryFailure, "no answer to POST /v1/contacts/batch", "deadline passed or it was cancelled")
	})
	t.Run("CRM gone", func(t *testing.T) {
		s, err := StartCRM(CRMConfig{Token: testToken})
		if err != nil {
			t.Fatal(err)
		}
		b := batchActionFor(t, s.URL(), 5*time.Second)
		s.Close()
		expectResults(t, b.DoBatch(context.Background(), batchOf(t, data...)), 2, queue.TaskResultRetryFailure, "no answer to POST /v1/contacts/batch", "will retry")
	})
	t.Run("call ended", func(t *testing.T) {
		s := startTestCRM(t, CRMConfig{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		got := batchActionFor(t, s.URL(), 5*time.Second).DoBatch(ctx, batchOf(t, data...))
		expectResults(t, got, 2, queue.TaskResultRetryFailure, "not sent", "context canceled")
		if st := s.Stats(); st.Requests != 0 {
			t.Errorf("%d requests sent", st.Requests)
		}
	})
}

// Task data the action cannot use fails that task alone, before anything
// is sent; the rest of the batch goes in the request.
func TestCRMBatchActionBadTaskData(t *testing.T) {
	s := startTestCRM(t, CRMConfig{})
	b := batchActionFor(t, s.URL(), 5*time.Second)
	got := b.DoBatch(context.Background(), batchOf(t,
		[]byte(`{"object_id":"1","action":"upsert","row":{"name":"A"}}`),
		cdcData(2, "create", "B", "", ""),
		[]byte(`{"object_id":"3","action":"create"}`),
	))
	if len(got) != 3 {
		t.Fatalf("%d results", len(got))
	}
	expectResult(t, got[0].Result, got[0].Message, queue.TaskResultPermanentFailure, "not sent: bad task data", `unknown action "upsert"`)
	expectResult(t, got[1].Result, got[1].Message, queue.TaskResultSuccess, "upserted contact 2", "in a bulk request of 1")
	expectResult(t, got[2].Result, got[2].Message, queue.TaskResultPermanentFailure, "not sent: bad task data", "row is missing for create")
	if st := s.Stats(); st.Requests != 1 || st.BulkWrites != 1 {
		t.Errorf("stats %s", st)
	}

	got = b.DoBatch(context.Background(), batchOf(t, []byte(`[1]`), []byte(`{"action":"delete"}`)))
	expectResults(t, got, 2, queue.TaskResultPermanentFailure, "not sent: bad task data")
	if st := s.Stats(); st.Requests != 1 {
		t.Errorf("a batch of bad data sent a request: %s", st)
	}
}

// A CRM without the bulk endpoint (a wrong base URL: the router's 404)
// fails the tasks, saying to check the URL.
func TestCRMBatchActionWrongURL(t *testing.T) {
	s := startTestCRM(t, CRMConfig{})
	got := batchActionFor(t, s.URL()+"/api", 5*time.Second).DoBatch(context.Background(), batchOf(t, cdcData(1, "delete", "", "", "")))
	expectResults(t, got, 1, queue.TaskResultPermanentFailure, "404", "check the CRM URL")
}

// An answer without a result for each record is a retry of every task.
func TestCRMBatchActionShortAnswer(t *testing.T) {
	short := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeCRMJSON(w, http.StatusOK, bulkAnswer{Results: []bulkResult{{ExternalID: "1", Status: 201}}})
	}))
	defer short.Close()
	got := batchActionFor(t, short.URL, 5*time.Second).DoBatch(context.Background(), batchOf(t, cdcData(1, "create", "A", "", ""), cdcData(2, "create", "B", "", "")))
	expectResults(t, got, 2, queue.TaskResultRetryFailure, "without a result for each record (1 results)", "will retry")
}

// The token never reaches a message, even when the far side echoes it in
// a whole-request error or in a record's result, and printing the action
// hides it.
func TestCRMBatchActionNeverShowsToken(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		if strings.Contains(r.URL.RawQuery, "whole") {
			writeCRMError(w, http.StatusBadRequest, "echo", "you sent "+auth)
			return
		}
		writeCRMJSON(w, http.StatusOK, bulkAnswer{Results: []bulkResult{{ExternalID: "1", Status: 400, Code: "echo", Message: "you sent " + auth}}})
	}))
	defer echo.Close()
	for _, url := range []string{echo.URL, echo.URL + "?whole"} {
		b := batchActionFor(t, url, 5*time.Second)
		got := b.DoBatch(context.Background(), batchOf(t, cdcData(1, "create", "A", "", "")))
		expectResults(t, got, 1, queue.TaskResultPermanentFailure, "you sent Bearer [redacted]")
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
			if out := fmt.Sprintf(verb, b); strings.Contains(out, testToken) {
				t.Errorf("%s shows the token: %s", verb, out)
			}
		}
	}
}

// Against a seeded CRM that faults, loses answers and rate-limits, sending
// again the tasks of each call that asked for a retry leaves the CRM
// exactly in sync. Sequential calls and a fake clock keep every fault in
// the same place on every run.
func TestCRMBatchActionConvergesThroughFaults(t *testing.T) {
	clock := newFakeClock()
	s := startTestCRM(t, CRMConfig{FaultRate: 0.3, LostAnswerRate: 0.4, RateLimit: 3, Seed: 11, Now: clock.Now})
	b := batchActionFor(t, s.URL(), 5*time.Second)
	run := func(data []any) {
		t.Helper()
		for attempt := 1; len(data) > 0; attempt++ {
			if attempt == 50 {
				t.Fatalf("%d tasks still retrying after 50 calls", len(data))
			}
			tasks := batchOf(t, data...)
			var again []any
			var wait time.Duration
			for i, r := range b.DoBatch(context.Background(), tasks) {
				switch r.Result {
				case queue.TaskResultSuccess:
				case queue.TaskResultRetryFailure:
					again = append(again, data[i])
					if d, ok := queue.RequestedRetryDelay(tasks[i]); ok {
						wait = max(wait, d)
					}
				default:
					t.Fatalf("%v: %s (%s)", data[i], r.Result, r.Message)
				}
			}
			clock.Advance(wait)
			data = again
		}
	}
	want := map[string]Contact{}
	var creates, changes []any
	for i := 1; i <= 40; i++ {
		creates = append(creates, cdcData(i, "create", fmt.Sprintf("Customer %d", i), fmt.Sprintf("c%d@example.com", i), "free"))
		want[fmt.Sprint(i)] = Contact{Name: fmt.Sprintf("Customer %d", i), Email: fmt.Sprintf("c%d@example.com", i), Tier: "free"}
	}
	for i := 0; i < len(creates); i += 5 {
		run(creates[i : i+5])
	}
	for i := 1; i <= 40; i++ {
		switch i % 4 {
		case 1:
			changes = append(changes, cdcData(i, "update", fmt.Sprintf("Customer %d v2", i), fmt.Sprintf("c%d@example.com", i), "gold"))
			want[fmt.Sprint(i)] = Contact{Name: fmt.Sprintf("Customer %d v2", i), Email: fmt.Sprintf("c%d@example.com", i), Tier: "gold"}
		case 2:
			changes = append(changes, cdcData(i, "delete", "", "", ""))
			delete(want, fmt.Sprint(i))
		}
	}
	for i := 0; i < len(changes); i += 5 {
		run(changes[i:min(i+5, len(changes))])
	}
	got := map[string]Contact{}
	for id, c := range s.Snapshot() {
		got[id] = Contact{Name: c.Name, Email: c.Email, Tier: c.Tier}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("CRM holds\n%v\nwant\n%v", got, want)
	}
	st := s.Stats()
	for name, n := range map[string]int{"faults": st.Faults, "lost answers": st.LostAnswers, "rate-limited": st.RateLimited} {
		if n == 0 {
			t.Errorf("no %s: the run did not exercise them (%s)", name, st)
		}
	}
	if st.Bulk != st.Requests {
		t.Errorf("%d of %d requests were bulk requests", st.Bulk, st.Requests)
	}
	t.Log(st)
}
