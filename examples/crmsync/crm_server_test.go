package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// testToken is the bearer token of the CRMs the tests start.
const testToken = "tok-3f9c1e7a5b2d"

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// newFakeClock returns a clock stopped at a fixed instant.
func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// startTestCRM starts a CRM with testToken (unless cfg sets one) and closes
// it when the test ends.
func startTestCRM(t *testing.T, cfg CRMConfig) *CRMServer {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	s, err := StartCRM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// crmReply is an answer of the CRM as the tests read it.
type crmReply struct {
	status int
	header http.Header
	body   []byte
}

// errorBody decodes the reply as a CRM error.
func (r crmReply) errorBody(t *testing.T) crmError {
	t.Helper()
	var e crmError
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("answer %d is not a JSON error: %q", r.status, r.body)
	}
	return e
}

// contact decodes the reply as a contact.
func (r crmReply) contact(t *testing.T) Contact {
	t.Helper()
	var c Contact
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatalf("answer %d is not a contact: %q", r.status, r.body)
	}
	return c
}

// send makes one request to s with the given token ("" for none) and a raw
// JSON body ("" for none).
func send(t *testing.T, s *CRMServer, token, method, path, body string) crmReply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return crmReply{status: resp.StatusCode, header: resp.Header, body: b}
}

// wantStatus fails the test unless r has the given status.
func wantStatus(t *testing.T, r crmReply, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
}

// The REST semantics: create, read, list, update, delete, with 409 and 404
// where a real CRM would answer them.
func TestCRMRestSemantics(t *testing.T) {
	clock := newFakeClock()
	s := startTestCRM(t, CRMConfig{Now: clock.Now})

	r := send(t, s, testToken, "POST", "/v1/contacts", `{"external_id":"42","name":"Ann Lee","email":"ann@example.com","tier":"gold"}`)
	wantStatus(t, r, http.StatusCreated)
	ann := r.contact(t)
	if ann.ID == "" || ann.ExternalID != "42" || ann.Name != "Ann Lee" || ann.Email != "ann@example.com" || ann.Tier != "gold" || !ann.UpdatedAt.Equal(clock.Now()) {
		t.Fatalf("created %+v", ann)
	}
	if loc := r.header.Get("Location"); loc != "/v1/contacts/42" {
		t.Errorf("Location %q", loc)
	}

	r = send(t, s, testToken, "POST", "/v1/contacts", `{"external_id":"42","name":"Someone Else"}`)
	wantStatus(t, r, http.StatusConflict)
	if e := r.errorBody(t); e.Code != "already_exists" || !strings.Contains(e.Message, ann.ID) {
		t.Errorf("409 body %+v", e)
	}

	r = send(t, s, testToken, "POST", "/v1/contacts", `{"external_id":"7","name":"Bo"}`)
	wantStatus(t, r, http.StatusCreated)
	bo := r.contact(t)
	if bo.ID == ann.ID {
		t.Fatalf("two contacts share CRM id %s", bo.ID)
	}

	r = send(t, s, testToken, "GET", "/v1/contacts/42", "")
	wantStatus(t, r, http.StatusOK)
	if got := r.contact(t); got != ann {
		t.Errorf("GET %+v, want %+v", got, ann)
	}

	clock.Advance(time.Minute)
	r = send(t, s, testToken, "PUT", "/v1/contacts/42", `{"name":"Ann Lee-Park","email":"ann@park.example","tier":"platinum"}`)
	wantStatus(t, r, http.StatusOK)
	upd := r.contact(t)
	if upd.ID != ann.ID || upd.Name != "Ann Lee-Park" || upd.Email != "ann@park.example" || upd.Tier != "platinum" || !upd.UpdatedAt.Equal(clock.Now()) {
		t.Errorf("updated %+v", upd)
	}
	// A PUT replaces the fields: leaving out email and tier clears them.
	r = send(t, s, testToken, "PUT", "/v1/contacts/7", `{"name":"Bo","external_id":"7"}`)
	wantStatus(t, r, http.StatusOK)
	if got := r.contact(t); got.Email != "" || got.Tier != "" {
		t.Errorf("PUT without email and tier left %+v", got)
	}
	wantStatus(t, send(t, s, testToken, "PUT", "/v1/contacts/99", `{"name":"Nobody"}`), http.StatusNotFound)

	r = send(t, s, testToken, "GET", "/v1/contacts", "")
	wantStatus(t, r, http.StatusOK)
	var list contactList
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatal(err)
	}
	if list.Count != 2 || len(list.Contacts) != 2 || list.Contacts[0].ExternalID != "42" || list.Contacts[1].ExternalID != "7" {
		t.Errorf("list %+v, want 42 then 7", list)
	}

	r = send(t, s, testToken, "DELETE", "/v1/contacts/7", "")
	wantStatus(t, r, http.StatusNoContent)
	if len(r.body) != 0 {
		t.Errorf("204 with body %q", r.body)
	}
	r = send(t, s, testToken, "DELETE", "/v1/contacts/7", "")
	wantStatus(t, r, http.StatusNotFound)
	if e := r.errorBody(t); e.Code != "not_found" || !strings.Contains(e.Message, `"7"`) {
		t.Errorf("404 body %+v", e)
	}
	wantStatus(t, send(t, s, testToken, "GET", "/v1/contacts/7", ""), http.StatusNotFound)
	wantStatus(t, send(t, s, testToken, "PATCH", "/v1/contacts/42", `{"name":"x"}`), http.StatusMethodNotAllowed)

	snap := s.Snapshot()
	if len(snap) != 1 || snap["42"] != upd {
		t.Errorf("snapshot %+v, want only %+v", snap, upd)
	}
	st := s.Stats()
	if st.Created != 2 || st.Updated != 2 || st.Deleted != 1 {
		t.Errorf("writes %d/%d/%d, want 2 created, 2 updated, 1 deleted", st.Created, st.Updated, st.Deleted)
	}
	want := map[int]int{201: 2, 409: 1, 200: 4, 404: 3, 204: 1, 405: 1}
	if fmt.Sprint(st.ByStatus) != fmt.Sprint(want) || st.Requests != 12 {
		t.Errorf("stats %v (%d requests), want %v (12)", st.ByStatus, st.Requests, want)
	}
}

// Snapshot is a copy: changing it does not change the CRM.
func TestCRMSnapshotIsACopy(t *testing.T) {
	s := startTestCRM(t, CRMConfig{})
	wantStatus(t, send(t, s, testToken, "POST", "/v1/contacts", `{"external_id":"1","name":"A"}`), http.StatusCreated)
	snap := s.Snapshot()
	delete(snap, "1")
	if len(s.Snapshot()) != 1 {
		t.Fatal("deleting from a snapshot changed the CRM")
	}
}

// Every request needs the bearer token; a refused request changes nothing.
func TestCRMAuth(t *testing.T) {
	s := startTestCRM(t, CRMConfig{})
	body := `{"external_id":"1","name":"A"}`
	for name, token := range map[string]string{"none": "", "wrong": "tok-wrong", "prefix": testToken[:5]} {
		r := send(t, s, token, "POST", "/v1/contacts", body)
		wantStatus(t, r, http.StatusUnauthorized)
		if e := r.errorBody(t); e.Code != "unauthorized" {
			t.Errorf("%s: body %+v", name, e)
		}
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", name, r.header.Get("WWW-Authenticate"))
		}
		if strings.Contains(string(r.body), testToken) {
			t.Errorf("%s: the answer shows the token", name)
		}
	}
	// Basic auth with the token as password is not a bearer token.
	req, _ := http.NewRequest("GET", s.URL()+"/v1/contacts", nil)
	req.SetBasicAuth("user", testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("basic auth: status %d", resp.StatusCode)
	}
	if len(s.Snapshot()) != 0 {
		t.Fatal("an unauthorised create was applied")
	}
	// The scheme is case-insensitive, as RFC 7235 says.
	req, _ = http.NewRequest("GET", s.URL()+"/v1/contacts", nil)
	req.Header.Set("Authorization", "bearer "+testToken)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("lower-case scheme: status %d", resp.StatusCode)
	}
}

// StartCRM without a token makes a random one.
func TestCRMRandomToken(t *testing.T) {
	a, err := StartCRM(CRMConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := StartCRM(CRMConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.Token() == "" || a.Token() == b.Token() {
		t.Fatalf("tokens %q and %q", a.Token(), b.Token())
	}
	wantStatus(t, send(t, a, a.Token(), "GET", "/v1/contacts", ""), http.StatusOK)
	wantStatus(t, send(t, a, b.Token(), "GET", "/v1/contacts", ""), http.StatusUnauthorized)
}

// Bodies are validated strictly; each refusal is a 400 (or 413, 415) with
// a message saying what is wrong, and nothing is stored.
func TestCRMValidation(t *testing.T) {
	s := startTestCRM(t, CRMConfig{})
	wantStatus(t, send(t, s, testToken, "POST", "/v1/contacts", `{"external_id":"5","name":"Five"}`), http.StatusCreated)
	before := s.Snapshot()

	cases := []struct {
		name, method, path, body string
		status                   int
		fragment                 string
	}{
		{"missing name", "POST", "/v1/contacts", `{"external_id":"1","email":"a@example.com"}`, 400, "name is required"},
		{"blank name", "POST", "/v1/contacts", `{"external_id":"1","name":"   "}`, 400, "name is required"},
		{"null name", "PUT", "/v1/contacts/5", `{"name":null}`, 400, "name is required"},
		{"invalid email", "POST", "/v1/contacts", `{"external_id":"1","name":"A","email":"not-an-email"}`, 400, `email "not-an-email" is not a valid address`},
		{"email with display name", "PUT", "/v1/contacts/5", `{"name":"A","email":"Ann <ann@example.com>"}`, 400, "not a valid address"},
		{"unknown field", "POST", "/v1/contacts", `{"external_id":"1","name":"A","phone":"123"}`, 400, `unknown field "phone"`},
		{"read-only field", "PUT", "/v1/contacts/5", `{"name":"A","id":"ct_9"}`, 400, `unknown field "id"`},
		{"missing external_id", "POST", "/v1/contacts", `{"name":"A"}`, 400, "external_id is required"},
		{"bad external_id", "POST", "/v1/contacts", `{"external_id":"a/b","name":"A"}`, 400, "external_id"},
		{"external_id mismatch", "PUT", "/v1/contacts/5", `{"external_id":"6","name":"A"}`, 400, "does not match"},
		{"wrong type", "POST", "/v1/contacts", `{"external_id":1,"name":"A"}`, 400, "external_id"},
		{"not JSON", "POST", "/v1/contacts", `name=A`, 400, "not a valid contact"},
		{"two values", "POST", "/v1/contacts", `{"external_id":"1","name":"A"} {}`, 400, "more than one JSON value"},
		{"several problems", "POST", "/v1/contacts", `{"external_id":"1","email":"x@"}`, 400, "name is required; email"},
		{"too large", "POST", "/v1/contacts", `{"external_id":"1","name":"` + strings.Repeat("a", maxContactBodyBytes) + `"}`, 413, "larger than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := send(t, s, testToken, c.method, c.path, c.body)
			wantStatus(t, r, c.status)
			if e := r.errorBody(t); !strings.Contains(e.Message, c.fragment) {
				t.Errorf("message %q does not contain %q", e.Message, c.fragment)
			}
		})
	}

	req, _ := http.NewRequest("POST", s.URL()+"/v1/contacts", strings.NewReader(`{"external_id":"1","name":"A"}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain body: status %d, want 415", resp.StatusCode)
	}

	if after := s.Snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("refused requests changed the store: %v, was %v", after, before)
	}
}

// statusSequence sends n GETs and returns the statuses in order.
func statusSequence(t *testing.T, s *CRMServer, n int) []int {
	t.Helper()
	out := make([]int, n)
	for i := range out {
		out[i] = send(t, s, testToken, "GET", "/v1/contacts", "").status
	}
	return out
}

// Faults are drawn from the seed: the same seed faults the same requests
// with the same statuses, and a faulted request changes nothing.
func TestCRMFaultsAreSeeded(t *testing.T) {
	cfg := CRMConfig{FaultRate: 0.4, Seed: 7}
	a := statusSequence(t, startTestCRM(t, cfg), 60)
	b := statusSequence(t, startTestCRM(t, cfg), 60)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("same seed, different faults:\n%v\n%v", a, b)
	}
	count := map[int]int{}
	for _, st := range a {
		count[st]++
	}
	if count[200] == 0 || count[503] == 0 || count[500] == 0 || len(count) != 3 {
		t.Fatalf("statuses %v, want a mix of 200, 503 and 500", count)
	}
	cfg.Seed = 8
	if c := statusSequence(t, startTestCRM(t, cfg), 60); fmt.Sprint(a) == fmt.Sprint(c) {
		t.Errorf("seeds 7 and 8 fault the same requests: %v", c)
	}
}

// At a fault rate of 1 every request fails with a configured status and no
// write is applied; the counters say so.
func TestCRMFaultsEverything(t *testing.T) {
	s := startTestCRM(t, CRMConfig{FaultRate: 1, FaultStatuses: []int{502}})
	for i := range 5 {
		r := send(t, s, testToken, "POST", "/v1/contacts", fmt.Sprintf(`{"external_id":"%d","name":"N"}`, i))
		wantStatus(t, r, http.StatusBadGateway)
		if e := r.errorBody(t); e.Code != "injected_fault" {
			t.Errorf("fault body %+v", e)
		}
	}
	if len(s.Snapshot()) != 0 {
		t.Fatal("a faulted create was applied")
	}
	st := s.Stats()
	if st.Faults != 5 || st.ByStatus[502] != 5 || st.Requests != 5 || st.Created != 0 {
		t.Errorf("stats %+v", st)
	}
	// Unauthorised requests are refused before faults are drawn.
	wantStatus(t, send(t, s, "", "GET", "/v1/contacts", ""), http.StatusUnauthorized)
}

// A lost answer applies the write but answers 500, so the retry of a
// create meets a 409 and the retry of a delete a 404.
func TestCRMLostAnswers(t *testing.T) {
	s := startTestCRM(t, CRMConfig{LostAnswerRate: 1})
	wantStatus(t, send(t, s, testToken, "POST", "/v1/contacts", `{"external_id":"1","name":"A"}`), http.StatusInternalServerError)
	if _, ok := s.Snapshot()["1"]; !ok {
		t.Fatal("the create behind the lost answer was not applied")
	}
	wantStatus(t, send(t, s, testToken, "POST", "/v1/contacts", `{"external_id":"1","name":"A"}`), http.StatusConflict)
	wantStatus(t, send(t, s, testToken, "PUT", "/v1/contacts/1", `{"name":"B"}`), http.StatusInternalServerError)
	if s.Snapshot()["1"].Name != "B" {
		t.Fatal("the update behind the lost answer was not applied")
	}
	wantStatus(t, send(t, s, testToken, "DELETE", "/v1/contacts/1", ""), http.StatusInternalServerError)
	wantStatus(t, send(t, s, testToken, "DELETE", "/v1/contacts/1", ""), http.StatusNotFound)
	// Reads are never lost.
	wantStatus(t, send(t, s, testToken, "GET", "/v1/contacts", ""), http.StatusOK)
	if st := s.Stats(); st.LostAnswers != 3 || st.Created != 1 || st.Updated != 1 || st.Deleted != 1 {
		t.Errorf("stats %+v", st)
	}
}

// The rate limiter admits RateLimit requests within any one second and
// answers the rest 429 with Retry-After: 1; refused requests do not use up
// the budget. The clock is fake, so the test does not depend on timing.
func TestCRMRateLimit(t *testing.T) {
	clock := newFakeClock()
	s := startTestCRM(t, CRMConfig{RateLimit: 3, Now: clock.Now})
	for range 3 {
		wantStatus(t, send(t, s, testToken, "GET", "/v1/contacts", ""), http.StatusOK)
		clock.Advance(100 * time.Millisecond)
	}
	wantStatus(t, send(t, s, "", "GET", "/v1/contacts", ""), http.StatusUnauthorized)
	for range 2 {
		r := send(t, s, testToken, "POST", "/v1/contacts", `{"external_id":"1","name":"A"}`)
		wantStatus(t, r, http.StatusTooManyRequests)
		if got := r.header.Get("Retry-After"); got != "1" {
			t.Errorf("Retry-After %q, want 1", got)
		}
		if e := r.errorBody(t); e.Code != "rate_limited" {
			t.Errorf("429 body %+v", e)
		}
	}
	if len(s.Snapshot()) != 0 {
		t.Fatal("a rate-limited create was applied")
	}
	// One second after the first admitted request, one slot is free again.
	clock.Advance(700 * time.Millisecond)
	wantStatus(t, send(t, s, testToken, "GET", "/v1/contacts", ""), http.StatusOK)
	wantStatus(t, send(t, s, testToken, "GET", "/v1/contacts", ""), http.StatusTooManyRequests)
	clock.Advance(time.Second)
	for range 3 {
		wantStatus(t, send(t, s, testToken, "GET", "/v1/contacts", ""), http.StatusOK)
	}
	if st := s.Stats(); st.RateLimited != 3 || st.ByStatus[429] != 3 || st.ByStatus[200] != 7 {
		t.Errorf("stats %+v", st)
	}
}

// The burst limiter admits BurstLimit requests within any BurstWindow, on
// top of the per-second limit, and refuses the rest 429.
func TestCRMBurstLimit(t *testing.T) {
	clock := newFakeClock()
	s := startTestCRM(t, CRMConfig{BurstLimit: 2, BurstWindow: 10 * time.Millisecond, RateLimit: 5, Now: clock.Now})
	wantStatus(t, send(t, s, testToken, "GET", "/v1/contacts", ""), http.StatusOK)
	wantStatus(t, send(t, s, testToken, "GET", "/v1/contacts", ""), http.StatusOK)
	r := send(t, s, testToken, "GET", "/v1/contacts", "")
	wantStatus(t, r, http.StatusTooManyRequests)
	if e := r.errorBody(t); !strings.Contains(e.Message, "2 requests within 10ms") || r.header.Get("Retry-After") != "1" {
		t.Errorf("429 %+v, Retry-After %q", e, r.header.Get("Retry-After"))
	}
	clock.Advance(10 * time.Millisecond) // the burst window has passed
	for range 3 {
		wantStatus(t, send(t, s, testToken, "GET", "/v1/contacts", ""), http.StatusOK)
		clock.Advance(10 * time.Millisecond)
	}
	// Five within the second: the per-second limit refuses the sixth.
	wantStatus(t, send(t, s, testToken, "GET", "/v1/contacts", ""), http.StatusTooManyRequests)
	if st := s.Stats(); st.RateLimited != 2 || st.ByStatus[429] != 2 {
		t.Errorf("stats %+v", st)
	}
	for _, bad := range []CRMConfig{{BurstLimit: -1}, {BurstWindow: -time.Millisecond}, {BurstWindow: 2 * time.Second}} {
		if _, err := StartCRM(bad); err == nil {
			t.Errorf("%+v was accepted", bad)
		}
	}
}

// A hung request gets no answer; Close releases it without answering.
func TestCRMHangUntilClose(t *testing.T) {
	s, err := StartCRM(CRMConfig{Token: testToken, HangRate: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", s.URL()+"/v1/contacts", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("answered %d", resp.StatusCode)
		} else {
			err = nil
		}
		errc <- err
	}()
	for s.Stats().Hung == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	s.Close()
	if err := <-errc; err != nil {
		t.Fatalf("a hung request was %v", err)
	}
	if st := s.Stats(); len(st.ByStatus) != 0 || st.Requests != 1 {
		t.Errorf("stats %+v", st)
	}
}

// Concurrent writes are all applied, each contact once (run with -race).
func TestCRMConcurrentCreates(t *testing.T) {
	s := startTestCRM(t, CRMConfig{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				id := fmt.Sprintf("%d-%d", w, i)
				req, _ := http.NewRequest("POST", s.URL()+"/v1/contacts", bytes.NewReader([]byte(`{"external_id":"`+id+`","name":"N"}`)))
				req.Header.Set("Authorization", "Bearer "+testToken)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					t.Errorf("create %s: %d", id, resp.StatusCode)
				}
			}
		}()
	}
	wg.Wait()
	snap := s.Snapshot()
	ids := map[string]bool{}
	for _, c := range snap {
		ids[c.ID] = true
	}
	if len(snap) != 80 || len(ids) != 80 {
		t.Fatalf("%d contacts with %d distinct ids, want 80", len(snap), len(ids))
	}
	if st := s.Stats(); st.Created != 80 || st.ByStatus[201] != 80 {
		t.Errorf("stats %+v", st)
	}
}

// StartCRM refuses a configuration that cannot work.
func TestStartCRMRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]CRMConfig{
		"fault rate above 1":  {FaultRate: 1.5},
		"negative lost rate":  {LostAnswerRate: -0.1},
		"negative rate limit": {RateLimit: -1},
		"fault status 200":    {FaultStatuses: []int{200}},
		"token with a space":  {Token: "a b"},
	} {
		if s, err := StartCRM(cfg); err == nil {
			s.Close()
			t.Errorf("%s: started", name)
		}
	}
}

// The stats summary lists statuses in order.
func TestCRMStatsString(t *testing.T) {
	st := CRMStats{Requests: 4, ByStatus: map[int]int{503: 1, 200: 2, 429: 1}, Created: 2, Faults: 1, RateLimited: 1}
	got := st.String()
	want := "4 requests (2×200, 1×429, 1×503); 2 created, 0 updated, 0 deleted; injected: 1 faults, 0 lost answers, 0 hung, 1 rate-limited"
	if got != want {
		t.Errorf("String()\n%s\nwant\n%s", got, want)
	}
	st = CRMStats{Requests: 3, ByStatus: map[int]int{200: 3}, Bulk: 2, Created: 150, Updated: 1, BulkWrites: 150}
	want = "3 requests (3×200); 150 created, 1 updated, 0 deleted; 2 bulk requests applied 150 of the writes; injected: 0 faults, 0 lost answers, 0 hung, 0 rate-limited"
	if got := st.String(); got != want {
		t.Errorf("String()\n%s\nwant\n%s", got, want)
	}
}

// HangEvery leaves exactly every n-th request unanswered, whatever the
// seed, and counts each hang. A request is given up once the CRM has counted
// it as hung, so nothing here depends on timing.
func TestCRMHangEvery(t *testing.T) {
	s := startTestCRM(t, CRMConfig{HangEvery: 3})
	var answered, hung int
	for i := 1; i <= 9; i++ {
		before := s.Stats().Hung
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/v1/contacts", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		type outcome struct {
			resp *http.Response
			err  error
		}
		done := make(chan outcome, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			done <- outcome{resp, err}
		}()
		var o outcome
	wait:
		for {
			select {
			case o = <-done:
				break wait
			default:
			}
			if s.Stats().Hung > before {
				cancel()
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
		if o.err != nil {
			if i%3 != 0 {
				t.Errorf("request %d got no answer: %v", i, o.err)
			}
			hung++
			continue
		}
		o.resp.Body.Close()
		if i%3 == 0 {
			t.Errorf("request %d was answered %d, want no answer", i, o.resp.StatusCode)
		}
		answered++
	}
	if st := s.Stats(); hung != 3 || answered != 6 || st.Hung != 3 || st.Requests != 9 {
		t.Fatalf("hung %d, answered %d; CRM counted %d hung of %d requests", hung, answered, st.Hung, st.Requests)
	}
	if _, err := StartCRM(CRMConfig{HangEvery: -1}); err == nil {
		t.Fatal("a negative HangEvery was accepted")
	}
}

// bulk sends one bulk request of the given operations (raw JSON objects).
func bulk(t *testing.T, s *CRMServer, ops ...string) crmReply {
	t.Helper()
	return send(t, s, testToken, "POST", crmBulkPath, `{"operations":[`+strings.Join(ops, ",")+`]}`)
}

// results decodes the reply as a bulk answer.
func (r crmReply) results(t *testing.T) []bulkResult {
	t.Helper()
	var a bulkAnswer
	if err := json.Unmarshal(r.body, &a); err != nil {
		t.Fatalf("answer %d is not a bulk answer: %q", r.status, r.body)
	}
	return a.Results
}

// wantResult fails the test unless res has the external id, status and
// code, and its message holds fragment.
func wantResult(t *testing.T, res bulkResult, id string, status int, code, fragment string) {
	t.Helper()
	if res.ExternalID != id || res.Status != status || res.Code != code || !strings.Contains(res.Message, fragment) {
		t.Errorf("result %+v, want %s %d %s with %q", res, id, status, code, fragment)
	}
}

// The bulk endpoint upserts and deletes in request order and answers a
// result per operation, in the same order, with the statuses the single
// endpoints would give.
func TestCRMBulkSemantics(t *testing.T) {
	clock := newFakeClock()
	s := startTestCRM(t, CRMConfig{Now: clock.Now})
	wantStatus(t, send(t, s, testToken, "POST", "/v1/contacts", `{"external_id":"1","name":"One"}`), http.StatusCreated)
	one := s.Snapshot()["1"]
	clock.Advance(time.Minute)

	r := bulk(t, s,
		`{"op":"upsert","external_id":"2","name":"Two","email":"two@example.com","tier":"gold"}`,
		`{"op":"upsert","external_id":"1","name":"One v2"}`,
		`{"op":"delete","external_id":"3"}`,
		`{"op":"upsert","external_id":"3","name":"Three"}`,
		`{"op":"delete","external_id":"3"}`,
	)
	wantStatus(t, r, http.StatusOK)
	res := r.results(t)
	if len(res) != 5 {
		t.Fatalf("%d results for 5 operations: %s", len(res), r.body)
	}
	snap := s.Snapshot()
	wantResult(t, res[0], "2", http.StatusCreated, "created", "created contact "+snap["2"].ID)
	wantResult(t, res[1], "1", http.StatusOK, "updated", "updated contact "+one.ID)
	wantResult(t, res[2], "3", http.StatusNotFound, "not_found", `no contact with external_id "3"`)
	wantResult(t, res[3], "3", http.StatusCreated, "created", "created contact")
	wantResult(t, res[4], "3", http.StatusNoContent, "deleted", "deleted contact 3")
	if res[0].ID != snap["2"].ID || res[1].ID != one.ID || res[4].ID != "" {
		t.Errorf("CRM ids in the results: %+v", res)
	}
	if len(snap) != 2 {
		t.Fatalf("CRM holds %v, want 1 and 2", snap)
	}
	if two := snap["2"]; two.Name != "Two" || two.Email != "two@example.com" || two.Tier != "gold" || !two.UpdatedAt.Equal(clock.Now()) {
		t.Errorf("upserted %+v", two)
	}
	// An upsert replaces the fields, as a PUT does.
	if got := snap["1"]; got.ID != one.ID || got.Name != "One v2" || got.Email != "" || !got.UpdatedAt.Equal(clock.Now()) {
		t.Errorf("updated %+v, was %+v", got, one)
	}
	st := s.Stats()
	if st.Requests != 2 || st.Bulk != 1 || st.BulkWrites != 4 || st.Created != 3 || st.Updated != 1 || st.Deleted != 1 || st.Writes() != 5 {
		t.Errorf("stats %+v", st)
	}
	if fmt.Sprint(st.ByStatus) != fmt.Sprint(map[int]int{200: 1, 201: 1}) {
		t.Errorf("statuses %v: a bulk request is one answer", st.ByStatus)
	}
}

// An invalid operation fails alone with a 400 result saying what is
// wrong; the other operations of the request apply.
func TestCRMBulkPartialFailure(t *testing.T) {
	s := startTestCRM(t, CRMConfig{})
	cases := []struct {
		op, id, code, fragment string
	}{
		{`{"op":"upsert","external_id":"1","name":"A","email":"not-an-email"}`, "1", "validation_failed", `email "not-an-email" is not a valid address`},
		{`{"op":"upsert","external_id":"2","email":"b@example.com"}`, "2", "validation_failed", "name is required"},
		{`{"op":"upsert","name":"C"}`, "", "validation_failed", "external_id is required"},
		{`{"op":"upsert","external_id":"a/b","name":"D"}`, "a/b", "validation_failed", "external_id"},
		{`{"op":"upsert","external_id":"5","name":5}`, "5", "invalid_json", "the operation is not valid"},
		{`{"op":"upsert","external_id":"6","name":"F","phone":"123"}`, "6", "invalid_json", `unknown field "phone"`},
		{`{"op":"merge","external_id":"7","name":"G"}`, "7", "invalid_operation", `unknown op "merge"`},
		{`{"external_id":"8","name":"H"}`, "8", "invalid_operation", "op is required"},
		{`{"op":"delete","external_id":"9","name":"I"}`, "9", "validation_failed", "a delete takes external_id alone"},
		{`"upsert"`, "", "invalid_json", "the operation is not valid"},
	}
	ops := []string{`{"op":"upsert","external_id":"ok1","name":"First"}`}
	for _, c := range cases {
		ops = append(ops, c.op)
	}
	ops = append(ops, `{"op":"upsert","external_id":"ok2","name":"Last"}`)
	r := bulk(t, s, ops...)
	wantStatus(t, r, http.StatusOK)
	res := r.results(t)
	if len(res) != len(ops) {
		t.Fatalf("%d results for %d operations: %s", len(res), len(ops), r.body)
	}
	wantResult(t, res[0], "ok1", http.StatusCreated, "created", "created contact")
	for i, c := range cases {
		wantResult(t, res[1+i], c.id, http.StatusBadRequest, c.code, c.fragment)
	}
	wantResult(t, res[len(res)-1], "ok2", http.StatusCreated, "created", "created contact")
	if snap := s.Snapshot(); len(snap) != 2 || snap["ok1"].Name != "First" || snap["ok2"].Name != "Last" {
		t.Errorf("CRM holds %v, want ok1 and ok2 alone", snap)
	}
	if st := s.Stats(); st.BulkWrites != 2 || st.Created != 2 {
		t.Errorf("stats %+v", st)
	}
}

// A bulk request holds at most MaxBatch operations (default 100) in a body
// larger than a single request may send; a request that breaks the rules
// as a whole is refused as a whole with a clear error, and nothing applies.
func TestCRMBulkLimits(t *testing.T) {
	upserts := func(n int, name string) []string {
		ops := make([]string, n)
		for i := range ops {
			ops[i] = fmt.Sprintf(`{"op":"upsert","external_id":"%d","name":%q}`, i, name)
		}
		return ops
	}
	s := startTestCRM(t, CRMConfig{})
	r := bulk(t, s, upserts(DefaultCRMMaxBatch+1, "N")...)
	wantStatus(t, r, http.StatusRequestEntityTooLarge)
	if e := r.errorBody(t); e.Code != "too_many_operations" || !strings.Contains(e.Message, "101 operations") || !strings.Contains(e.Message, "at most 100") {
		t.Errorf("413 body %+v", e)
	}
	// 100 operations of 200 four-byte characters: more than a single
	// request's body may hold, within the bulk endpoint's.
	long := upserts(DefaultCRMMaxBatch, strings.Repeat("𝄞", 200))
	if size := len(strings.Join(long, ",")); size <= maxContactBodyBytes || size >= maxBulkBodyBytes {
		t.Fatalf("the long request is %d bytes", size)
	}
	r = bulk(t, s, long...)
	wantStatus(t, r, http.StatusOK)
	if got := len(s.Snapshot()); got != DefaultCRMMaxBatch {
		t.Fatalf("%d contacts after a full bulk request", got)
	}

	s = startTestCRM(t, CRMConfig{MaxBatch: 3})
	cases := []struct {
		name, body string
		status     int
		code       string
		fragment   string
	}{
		{"more than MaxBatch", `{"operations":[` + strings.Join(upserts(4, "N"), ",") + `]}`, 413, "too_many_operations", "at most 3"},
		{"no operations", `{"operations":[]}`, 400, "validation_failed", "operations is missing or empty"},
		{"operations missing", `{}`, 400, "validation_failed", "operations is missing or empty"},
		{"unknown field", `{"operations":[` + upserts(1, "N")[0] + `],"atomic":true}`, 400, "invalid_json", `unknown field "atomic"`},
		{"not an array", `{"operations":{"op":"upsert"}}`, 400, "invalid_json", "not a valid bulk request"},
		{"too large", `{"operations":[{"op":"upsert","external_id":"1","name":"` + strings.Repeat("a", maxBulkBodyBytes) + `"}]}`, 413, "too_large", "larger than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := send(t, s, testToken, "POST", crmBulkPath, c.body)
			wantStatus(t, r, c.status)
			if e := r.errorBody(t); e.Code != c.code || !strings.Contains(e.Message, c.fragment) {
				t.Errorf("body %+v, want %s with %q", e, c.code, c.fragment)
			}
		})
	}
	if len(s.Snapshot()) != 0 {
		t.Errorf("refused bulk requests changed the store: %v", s.Snapshot())
	}
	if _, err := StartCRM(CRMConfig{MaxBatch: -1}); err == nil {
		t.Error("a negative MaxBatch was accepted")
	}
}

// A lost answer to a bulk request applies every operation and answers
// 500; sending it again finds the contacts upserted and deleted already.
func TestCRMBulkLostAnswer(t *testing.T) {
	s := startTestCRM(t, CRMConfig{LostAnswerRate: 1})
	wantStatus(t, bulk(t, s, `{"op":"upsert","external_id":"gone","name":"G"}`), http.StatusInternalServerError)
	ops := []string{`{"op":"upsert","external_id":"1","name":"A"}`, `{"op":"upsert","external_id":"2","name":"B"}`, `{"op":"delete","external_id":"gone"}`}
	r := bulk(t, s, ops...)
	wantStatus(t, r, http.StatusInternalServerError)
	if e := r.errorBody(t); e.Code != "internal_error" {
		t.Errorf("500 body %+v", e)
	}
	if snap := s.Snapshot(); len(snap) != 2 || snap["1"].Name != "A" || snap["2"].Name != "B" {
		t.Fatalf("CRM holds %v after the lost answer", snap)
	}

	s.mu.Lock()
	s.cfg.LostAnswerRate = 0
	s.mu.Unlock()
	res := bulk(t, s, ops...).results(t)
	wantResult(t, res[0], "1", http.StatusOK, "updated", "updated")
	wantResult(t, res[1], "2", http.StatusOK, "updated", "updated")
	wantResult(t, res[2], "gone", http.StatusNotFound, "not_found", "no contact")
	if st := s.Stats(); st.LostAnswers != 2 || st.Created != 3 || st.Deleted != 1 || st.Updated != 2 || st.Bulk != 3 {
		t.Errorf("stats %+v", st)
	}
}

// A bulk request counts once against the rate limit and the fault draws,
// however many operations it holds; a refused or faulted one applies none.
func TestCRMBulkCountsOnce(t *testing.T) {
	ops := make([]string, 50)
	for i := range ops {
		ops[i] = fmt.Sprintf(`{"op":"upsert","external_id":"%d","name":"N"}`, i)
	}
	clock := newFakeClock()
	s := startTestCRM(t, CRMConfig{RateLimit: 2, Now: clock.Now})
	wantStatus(t, bulk(t, s, ops...), http.StatusOK)
	wantStatus(t, bulk(t, s, ops...), http.StatusOK)
	r := bulk(t, s, `{"op":"delete","external_id":"1"}`)
	wantStatus(t, r, http.StatusTooManyRequests)
	if r.header.Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
	}
	if _, ok := s.Snapshot()["1"]; !ok {
		t.Error("the rate-limited delete was applied")
	}
	if st := s.Stats(); st.Requests != 3 || st.Bulk != 3 || st.RateLimited != 1 || st.BulkWrites != 100 {
		t.Errorf("stats %+v", st)
	}

	s = startTestCRM(t, CRMConfig{FaultRate: 1, FaultStatuses: []int{503}})
	r = bulk(t, s, ops...)
	wantStatus(t, r, http.StatusServiceUnavailable)
	if e := r.errorBody(t); e.Code != "injected_fault" {
		t.Errorf("fault body %+v", e)
	}
	if st := s.Stats(); st.Faults != 1 || len(s.Snapshot()) != 0 || st.Writes() != 0 {
		t.Errorf("a faulted bulk request: stats %+v, %d contacts", st, len(s.Snapshot()))
	}
}
