package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/mail"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Contact is one contact held by the CRM.
type Contact struct {
	// ID is the CRM's own id, assigned when the contact is created.
	ID string `json:"id"`
	// ExternalID is our customer id; the CRM's API addresses contacts by it.
	ExternalID string `json:"external_id"`
	// Name is the contact's display name; never empty.
	Name string `json:"name"`
	// Email is the contact's address; empty or a valid address.
	Email string `json:"email"`
	// Tier is a free-form customer tier ("gold", "free", ...).
	Tier string `json:"tier"`
	// UpdatedAt is when the contact was last created or updated.
	UpdatedAt time.Time `json:"updated_at"`
}

// CRMConfig configures a CRMServer. The zero value is a well-behaved CRM
// with a random token and no faults.
type CRMConfig struct {
	// Token is the bearer token every request must carry. Empty means a
	// random token, readable with CRMServer.Token.
	Token string
	// FaultRate is the fraction (0 to 1) of authorised, admitted requests
	// answered with a fault status before anything is done.
	FaultRate float64
	// FaultStatuses are the statuses a fault answers with, picked at random.
	// Empty means 503 and 500.
	FaultStatuses []int
	// LostAnswerRate is the fraction (0 to 1) of successful writes that are
	// applied but answered 500, as if the answer got lost on the way back:
	// a retry then finds the contact already created, updated or gone.
	LostAnswerRate float64
	// HangRate is the fraction (0 to 1) of requests that never get an
	// answer: they hang until the client gives up or the server closes.
	HangRate float64
	// HangEvery leaves every HangEvery-th admitted request unanswered as
	// well, so that a run of enough requests meets hangs whatever the
	// draws. 0 means none.
	HangEvery int
	// RateLimit is how many requests the CRM admits within any one second;
	// further requests are answered 429 with "Retry-After: 1". 0 means no
	// limit.
	RateLimit int
	// BurstLimit is how many requests the CRM admits within any
	// BurstWindow, as APIs that meter bursts besides a sustained rate do;
	// further requests are answered 429 with "Retry-After: 1" as well. 0
	// means no burst limit.
	BurstLimit int
	// BurstWindow is the window of BurstLimit; 0 means 20ms.
	BurstWindow time.Duration
	// MaxBatch is the most operations one bulk request may hold; 0 means
	// 100 (DefaultCRMMaxBatch).
	MaxBatch int
	// Seed seeds the fault draws, so a seeded CRM faults the same requests
	// in the same order every time.
	Seed uint64
	// Now is the CRM's clock, for updated_at and the rate limiter; nil
	// means time.Now. Tests pass a fixed clock to make the limiter exact.
	Now func() time.Time
	// OnAdmit, when set, is called with the time (by Now) at which the rate
	// limits admitted each authorised request, before faults are drawn, so
	// that a test can see how requests were spread over time.
	OnAdmit func(at time.Time)
}

// DefaultCRMMaxBatch is the most operations a bulk request may hold when
// CRMConfig.MaxBatch is 0.
const DefaultCRMMaxBatch = 100

// CRMStats counts the requests a CRMServer has answered.
type CRMStats struct {
	// Requests is the number of requests that arrived, answered or not.
	Requests int
	// ByStatus counts answers per HTTP status.
	ByStatus map[int]int
	// Faults counts requests answered with an injected fault status.
	Faults int
	// LostAnswers counts writes applied but answered 500.
	LostAnswers int
	// Hung counts requests left unanswered on purpose.
	Hung int
	// RateLimited counts requests answered 429 by the rate limiter.
	RateLimited int
	// Bulk counts the requests to the bulk endpoint among Requests.
	Bulk int
	// Created, Updated and Deleted count the writes applied to the store.
	Created, Updated, Deleted int
	// BulkWrites counts the writes among them applied by bulk requests.
	BulkWrites int
}

// Writes is the number of writes applied to the store.
func (s CRMStats) Writes() int { return s.Created + s.Updated + s.Deleted }

// String summarises the counters on one line, statuses in order.
func (s CRMStats) String() string {
	codes := make([]int, 0, len(s.ByStatus))
	for code := range s.ByStatus {
		codes = append(codes, code)
	}
	sort.Ints(codes)
	parts := make([]string, 0, len(codes))
	for _, code := range codes {
		parts = append(parts, fmt.Sprintf("%d×%d", s.ByStatus[code], code))
	}
	bulk := ""
	if s.Bulk > 0 {
		bulk = fmt.Sprintf("; %d bulk requests applied %d of the writes", s.Bulk, s.BulkWrites)
	}
	return fmt.Sprintf("%d requests (%s); %d created, %d updated, %d deleted%s; injected: %d faults, %d lost answers, %d hung, %d rate-limited",
		s.Requests, strings.Join(parts, ", "), s.Created, s.Updated, s.Deleted, bulk, s.Faults, s.LostAnswers, s.Hung, s.RateLimited)
}

// CRMServer is a small CRM with a REST API on loopback, holding contacts in
// memory. It checks a bearer token, validates JSON bodies strictly, and can
// inject faults (5xx answers, lost answers, hangs) and rate-limit, so that a
// client's retries become visible. It is safe for concurrent use.
//
// Endpoints (all under the bearer token; errors are JSON objects with
// "code" and "message", except the router's plain-text 404 for an unknown
// path and 405 for a wrong method):
//
//	POST   /v1/contacts                 create; 201, or 409 if external_id exists
//	GET    /v1/contacts                 list all, in creation order
//	GET    /v1/contacts/{external_id}   read one; 404 if missing
//	PUT    /v1/contacts/{external_id}   update; 200, or 404 if missing
//	DELETE /v1/contacts/{external_id}   delete; 204, or 404 if missing
//	POST   /v1/contacts/batch           bulk upserts and deletes; 200, a result each
//
// The bulk endpoint takes {"operations": [...]}, at most MaxBatch of them
// (more: 413), each {"op": "upsert", "external_id", "name", "email",
// "tier"} (create, or replace the fields) or {"op": "delete",
// "external_id"}, in a body of up to 1 MiB. It applies them in order and
// answers 200 {"results": [...]}, one result per operation in the same
// order: {"external_id", "status", "code", "message"}, and "id" for an
// upsert, with status 201 (created), 200 (updated), 204 (deleted), 404 (no
// such contact to delete) or 400 (the operation is invalid: it alone
// fails, the others apply). A bulk request counts once against the rate
// limits and the fault draws: a 429 or a fault fails all of it, and a
// lost answer applies every operation and answers 500.
//
// A request is checked in this order: token (401), rate limit (429), fault
// injection, then routing and validation (400, 404, 405, 409, 413, 415).
type CRMServer struct {
	cfg      CRMConfig
	token    string
	ln       net.Listener
	srv      *http.Server
	closing  chan struct{}
	closeOne sync.Once

	mu       sync.Mutex
	rng      *mrand.Rand
	contacts map[string]Contact // by external id
	nextID   int
	admitted []time.Time // admission times within the last second, oldest first
	drawn    int         // requests that reached drawFault
	stats    CRMStats
	byStatus map[int]int
}

// StartCRM starts a CRM listening on 127.0.0.1 at a free port.
func StartCRM(cfg CRMConfig) (*CRMServer, error) {
	for name, rate := range map[string]float64{"FaultRate": cfg.FaultRate, "LostAnswerRate": cfg.LostAnswerRate, "HangRate": cfg.HangRate} {
		if math.IsNaN(rate) || rate < 0 || rate > 1 {
			return nil, fmt.Errorf("crm: %s %v is not between 0 and 1", name, rate)
		}
	}
	if cfg.HangEvery < 0 {
		return nil, fmt.Errorf("crm: HangEvery %d is negative", cfg.HangEvery)
	}
	if cfg.RateLimit < 0 {
		return nil, fmt.Errorf("crm: RateLimit %d is negative", cfg.RateLimit)
	}
	if cfg.BurstLimit < 0 || cfg.BurstWindow < 0 || cfg.BurstWindow > time.Second {
		return nil, fmt.Errorf("crm: BurstLimit %d within %s: want a limit of 0 or more within at most a second", cfg.BurstLimit, cfg.BurstWindow)
	}
	if cfg.BurstWindow == 0 {
		cfg.BurstWindow = 20 * time.Millisecond
	}
	if cfg.MaxBatch < 0 {
		return nil, fmt.Errorf("crm: MaxBatch %d is negative", cfg.MaxBatch)
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = DefaultCRMMaxBatch
	}
	cfg.FaultStatuses = slices.Clone(cfg.FaultStatuses)
	if len(cfg.FaultStatuses) == 0 {
		cfg.FaultStatuses = []int{http.StatusServiceUnavailable, http.StatusInternalServerError}
	}
	for _, code := range cfg.FaultStatuses {
		if code < 400 || code > 599 {
			return nil, fmt.Errorf("crm: fault status %d is not an error status", code)
		}
	}
	token := cfg.Token
	if token == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("crm: cannot make a token: %w", err)
		}
		token = "crm_" + hex.EncodeToString(b)
	}
	if strings.ContainsAny(token, " \t\r\n") {
		return nil, errors.New("crm: the token contains spaces or line breaks")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("crm: listen: %w", err)
	}
	s := &CRMServer{
		cfg:      cfg,
		token:    token,
		ln:       ln,
		closing:  make(chan struct{}),
		rng:      mrand.New(mrand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		contacts: map[string]Contact{},
		byStatus: map[int]int{},
	}
	s.srv = &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln) //nolint:errcheck // Serve returns ErrServerClosed on Close
	return s, nil
}

// URL returns the CRM's base URL, such as http://127.0.0.1:41234.
func (s *CRMServer) URL() string { return "http://" + s.ln.Addr().String() }

// Token returns the bearer token the CRM accepts.
func (s *CRMServer) Token() string { return s.token }

// Close stops the CRM: hung requests are released, the listener closes,
// and Close waits (up to five seconds) for requests in progress.
func (s *CRMServer) Close() {
	s.closeOne.Do(func() {
		close(s.closing)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.srv.Close()
		}
	})
}

// Snapshot returns a copy of the CRM's contacts by external id.
func (s *CRMServer) Snapshot() map[string]Contact {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Contact, len(s.contacts))
	for k, c := range s.contacts {
		out[k] = c
	}
	return out
}

// Stats returns a copy of the CRM's request counters.
func (s *CRMServer) Stats() CRMStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ByStatus = make(map[int]int, len(s.byStatus))
	for k, v := range s.byStatus {
		st.ByStatus[k] = v
	}
	return st
}

// handler wraps the routes in counting, auth, rate limiting and faults.
func (s *CRMServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/contacts", s.createContact)
	mux.HandleFunc("GET /v1/contacts", s.listContacts)
	mux.HandleFunc("GET /v1/contacts/{external_id}", s.getContact)
	mux.HandleFunc("PUT /v1/contacts/{external_id}", s.updateContact)
	mux.HandleFunc("DELETE /v1/contacts/{external_id}", s.deleteContact)
	mux.HandleFunc("POST "+crmBulkPath, s.bulkContacts)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.arrived(r)
		cw := &crmStatusWriter{ResponseWriter: w, s: s}
		if !s.authorised(r) {
			cw.Header().Set("WWW-Authenticate", `Bearer realm="crm"`)
			writeCRMError(cw, http.StatusUnauthorized, "unauthorized", "missing or invalid bearer token")
			return
		}
		if !s.admit() {
			cw.Header().Set("Retry-After", "1")
			writeCRMError(cw, http.StatusTooManyRequests, "rate_limited", s.limitMessage())
			return
		}
		switch fault := s.drawFault(); {
		case fault == faultHang:
			s.hang(r)
			panic(http.ErrAbortHandler) // drop the connection without an answer
		case fault > 0:
			writeCRMError(cw, fault, "injected_fault", fmt.Sprintf("injected fault: %d %s", fault, http.StatusText(fault)))
			return
		}
		mux.ServeHTTP(cw, r)
	})
}

// faultHang is drawFault's answer for a request that is never answered.
const faultHang = -1

// drawFault decides, from HangEvery and the seeded generator, whether the
// request is answered with a fault: a status, faultHang, or 0 for none.
func (s *CRMServer) drawFault() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drawn++
	if s.cfg.HangEvery > 0 && s.drawn%s.cfg.HangEvery == 0 {
		s.stats.Hung++
		return faultHang
	}
	if s.cfg.HangRate > 0 && s.rng.Float64() < s.cfg.HangRate {
		s.stats.Hung++
		return faultHang
	}
	if s.cfg.FaultRate > 0 && s.rng.Float64() < s.cfg.FaultRate {
		s.stats.Faults++
		return s.cfg.FaultStatuses[s.rng.IntN(len(s.cfg.FaultStatuses))]
	}
	return 0
}

// loseAnswer decides, from the seeded generator, whether an applied write
// is answered 500 instead of its real answer.
func (s *CRMServer) loseAnswer() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.LostAnswerRate > 0 && s.rng.Float64() < s.cfg.LostAnswerRate {
		s.stats.LostAnswers++
		return true
	}
	return false
}

// hang waits until the client gives up or the CRM closes.
func (s *CRMServer) hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.closing:
	}
}

// authorised reports whether r carries the CRM's bearer token.
func (s *CRMServer) authorised(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") && token == s.token
}

// admit applies the rate limits and tells OnAdmit of a request admitted.
func (s *CRMServer) admit() bool {
	at, ok := s.limit()
	if ok && s.cfg.OnAdmit != nil {
		s.cfg.OnAdmit(at)
	}
	return ok
}

// limit decides whether a request arriving now is admitted: when fewer
// than RateLimit requests were admitted within the second before it and
// fewer than BurstLimit within the BurstWindow before it.
func (s *CRMServer) limit() (now time.Time, ok bool) {
	if s.cfg.RateLimit == 0 && s.cfg.BurstLimit == 0 {
		return s.cfg.Now(), true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now = s.cfg.Now()
	keep := s.admitted[:0]
	inBurst := 0
	for _, t := range s.admitted {
		if now.Sub(t) < time.Second {
			keep = append(keep, t)
		}
		if now.Sub(t) < s.cfg.BurstWindow {
			inBurst++
		}
	}
	s.admitted = keep
	if s.cfg.RateLimit > 0 && len(s.admitted) >= s.cfg.RateLimit || s.cfg.BurstLimit > 0 && inBurst >= s.cfg.BurstLimit {
		s.stats.RateLimited++
		return now, false
	}
	s.admitted = append(s.admitted, now)
	return now, true
}

// limitMessage says what the rate limits are, for a 429's body.
func (s *CRMServer) limitMessage() string {
	var limits []string
	if s.cfg.RateLimit > 0 {
		limits = append(limits, fmt.Sprintf("%d requests per second", s.cfg.RateLimit))
	}
	if s.cfg.BurstLimit > 0 {
		limits = append(limits, fmt.Sprintf("%d requests within %s", s.cfg.BurstLimit, s.cfg.BurstWindow))
	}
	return "more than " + strings.Join(limits, " or ") + "; retry after 1 second"
}

// arrived counts one request as it arrives.
func (s *CRMServer) arrived(r *http.Request) {
	s.mu.Lock()
	s.stats.Requests++
	if r.Method == http.MethodPost && r.URL.Path == crmBulkPath {
		s.stats.Bulk++
	}
	s.mu.Unlock()
}

// answered counts one answer by status, before it is sent, so a client
// that has its answer always finds it counted.
func (s *CRMServer) answered(status int) {
	s.mu.Lock()
	s.byStatus[status]++
	s.mu.Unlock()
}

// contactInput is the body of a create or an update. Unknown fields are
// refused; external_id is required on create and, if given on update, must
// match the path.
type contactInput struct {
	ExternalID *string `json:"external_id"`
	Name       *string `json:"name"`
	Email      *string `json:"email"`
	Tier       *string `json:"tier"`
}

// maxContactBodyBytes bounds the body of a create or an update.
const maxContactBodyBytes = 64 << 10

// readContactInput decodes and validates a request body; on failure it has already
// written the error answer.
func readContactInput(w http.ResponseWriter, r *http.Request) (contactInput, bool) {
	var in contactInput
	if !readJSONBody(w, r, maxContactBodyBytes, "contact", &in) {
		return in, false
	}
	if msg := validateInput(in); msg != "" {
		writeCRMError(w, http.StatusBadRequest, "validation_failed", msg)
		return in, false
	}
	return in, true
}

// readJSONBody decodes a request body of at most limit bytes into v,
// strictly (one JSON value, no unknown fields); what names the value in an
// error. On failure it has already written the error answer.
func readJSONBody(w http.ResponseWriter, r *http.Request, limit int64, what string, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeCRMError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", fmt.Sprintf("Content-Type %q is not application/json", ct))
			return false
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeCRMError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body is larger than %d bytes", limit))
			return false
		}
		writeCRMError(w, http.StatusBadRequest, "invalid_json", "the body is not a valid "+what+": "+strings.TrimPrefix(err.Error(), "json: "))
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeCRMError(w, http.StatusBadRequest, "invalid_json", "the body holds more than one JSON value")
		return false
	}
	return true
}

// validateInput checks the fields of a contact body and returns what is wrong,
// or "" when nothing is.
func validateInput(in contactInput) string {
	var problems []string
	if in.ExternalID != nil {
		if msg := checkExternalID(*in.ExternalID); msg != "" {
			problems = append(problems, msg)
		}
	}
	switch {
	case in.Name == nil || strings.TrimSpace(*in.Name) == "":
		problems = append(problems, "name is required")
	case utf8.RuneCountInString(*in.Name) > 200:
		problems = append(problems, "name is longer than 200 characters")
	}
	if in.Email != nil && *in.Email != "" {
		if a, err := mail.ParseAddress(*in.Email); err != nil || a.Address != *in.Email || a.Name != "" {
			problems = append(problems, fmt.Sprintf("email %q is not a valid address", *in.Email))
		}
	}
	if in.Tier != nil && utf8.RuneCountInString(*in.Tier) > 50 {
		problems = append(problems, "tier is longer than 50 characters")
	}
	return strings.Join(problems, "; ")
}

// checkExternalID says what is wrong with an external id, or "".
func checkExternalID(id string) string {
	switch {
	case strings.TrimSpace(id) == "":
		return "external_id is required"
	case len(id) > 128:
		return "external_id is longer than 128 bytes"
	case strings.ContainsAny(id, "/?#") || strings.TrimSpace(id) != id:
		return fmt.Sprintf("external_id %q contains spaces, '/', '?' or '#'", id)
	}
	return ""
}

// createContact handles POST /v1/contacts.
func (s *CRMServer) createContact(w http.ResponseWriter, r *http.Request) {
	in, ok := readContactInput(w, r)
	if !ok {
		return
	}
	if in.ExternalID == nil {
		writeCRMError(w, http.StatusBadRequest, "validation_failed", "external_id is required")
		return
	}
	s.mu.Lock()
	if old, exists := s.contacts[*in.ExternalID]; exists {
		s.mu.Unlock()
		writeCRMError(w, http.StatusConflict, "already_exists", fmt.Sprintf("a contact with external_id %q already exists (id %s)", old.ExternalID, old.ID))
		return
	}
	c, _ := s.upsertLocked(*in.ExternalID, in)
	s.mu.Unlock()
	if s.loseAnswer() {
		writeCRMError(w, http.StatusInternalServerError, "internal_error", "the answer was lost")
		return
	}
	w.Header().Set("Location", "/v1/contacts/"+c.ExternalID)
	writeCRMJSON(w, http.StatusCreated, c)
}

// updateContact handles PUT /v1/contacts/{external_id}: the body replaces
// the contact's name, email and tier.
func (s *CRMServer) updateContact(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("external_id")
	in, ok := readContactInput(w, r)
	if !ok {
		return
	}
	if in.ExternalID != nil && *in.ExternalID != id {
		writeCRMError(w, http.StatusBadRequest, "validation_failed", fmt.Sprintf("external_id %q in the body does not match %q in the path", *in.ExternalID, id))
		return
	}
	s.mu.Lock()
	if _, exists := s.contacts[id]; !exists {
		s.mu.Unlock()
		writeContactNotFound(w, id)
		return
	}
	c, _ := s.upsertLocked(id, in)
	s.mu.Unlock()
	if s.loseAnswer() {
		writeCRMError(w, http.StatusInternalServerError, "internal_error", "the answer was lost")
		return
	}
	writeCRMJSON(w, http.StatusOK, c)
}

// deleteContact handles DELETE /v1/contacts/{external_id}.
func (s *CRMServer) deleteContact(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("external_id")
	s.mu.Lock()
	exists := s.deleteLocked(id)
	s.mu.Unlock()
	if !exists {
		writeContactNotFound(w, id)
		return
	}
	if s.loseAnswer() {
		writeCRMError(w, http.StatusInternalServerError, "internal_error", "the answer was lost")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// upsertLocked creates the contact with external id id from in, or
// replaces the fields of the one there, and reports whether it created it.
// s.mu must be held.
func (s *CRMServer) upsertLocked(id string, in contactInput) (Contact, bool) {
	c, exists := s.contacts[id]
	if !exists {
		s.nextID++
		c = Contact{ID: fmt.Sprintf("ct_%06d", s.nextID), ExternalID: id}
	}
	applyInput(&c, in)
	c.UpdatedAt = s.cfg.Now().UTC()
	s.contacts[id] = c
	if exists {
		s.stats.Updated++
	} else {
		s.stats.Created++
	}
	return c, !exists
}

// deleteLocked deletes the contact with external id id and reports whether
// there was one. s.mu must be held.
func (s *CRMServer) deleteLocked(id string) bool {
	if _, exists := s.contacts[id]; !exists {
		return false
	}
	delete(s.contacts, id)
	s.stats.Deleted++
	return true
}

// crmBulkPath is the path of the bulk endpoint.
const crmBulkPath = "/v1/contacts/batch"

// maxBulkBodyBytes bounds the body of a bulk request.
const maxBulkBodyBytes = 1 << 20

// bulkInput is the body of a bulk request.
type bulkInput struct {
	Operations []json.RawMessage `json:"operations"`
}

// bulkOperation is one operation of a bulk request: an upsert carries the
// contact's external_id and fields, a delete its external_id alone.
type bulkOperation struct {
	Op string `json:"op"`
	contactInput
}

// bulkResult is the outcome of one operation of a bulk request.
type bulkResult struct {
	ExternalID string `json:"external_id"`
	Status     int    `json:"status"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	ID         string `json:"id,omitempty"` // the CRM's id of an upserted contact
}

// bulkAnswer is the answer of a bulk request: a result per operation, in
// the order of the operations.
type bulkAnswer struct {
	Results []bulkResult `json:"results"`
}

// bulkContacts handles POST /v1/contacts/batch: it checks every operation,
// applies the valid ones in order, and answers a result for each.
func (s *CRMServer) bulkContacts(w http.ResponseWriter, r *http.Request) {
	var in bulkInput
	if !readJSONBody(w, r, maxBulkBodyBytes, "bulk request", &in) {
		return
	}
	switch n := len(in.Operations); {
	case n == 0:
		writeCRMError(w, http.StatusBadRequest, "validation_failed", "operations is missing or empty")
		return
	case n > s.cfg.MaxBatch:
		writeCRMError(w, http.StatusRequestEntityTooLarge, "too_many_operations",
			fmt.Sprintf("the request holds %d operations; a bulk request may hold at most %d", n, s.cfg.MaxBatch))
		return
	}
	ops := make([]bulkOperation, len(in.Operations))
	results := make([]bulkResult, len(in.Operations))
	for i, raw := range in.Operations {
		ops[i], results[i] = parseBulkOperation(raw)
	}
	written := 0
	s.mu.Lock()
	for i, op := range ops {
		if results[i].Status != 0 {
			continue // invalid: not applied
		}
		results[i] = s.applyLocked(op)
		if results[i].Status/100 == 2 {
			written++
		}
	}
	s.stats.BulkWrites += written
	s.mu.Unlock()
	if written > 0 && s.loseAnswer() {
		writeCRMError(w, http.StatusInternalServerError, "internal_error", "the answer was lost")
		return
	}
	writeCRMJSON(w, http.StatusOK, bulkAnswer{Results: results})
}

// parseBulkOperation decodes and checks one operation of a bulk request.
// An operation that cannot be applied gets its 400 result; a valid one a
// zero result.
func parseBulkOperation(raw json.RawMessage) (bulkOperation, bulkResult) {
	var op bulkOperation
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&op); err != nil {
		var id struct {
			ExternalID string `json:"external_id"`
		}
		_ = json.Unmarshal(raw, &id) // for the result, if it can be read
		return op, invalidOperation(id.ExternalID, "invalid_json", "the operation is not valid: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	id := derefString(op.ExternalID)
	if op.ExternalID == nil {
		return op, invalidOperation(id, "validation_failed", "external_id is required")
	}
	switch op.Op {
	case "upsert":
		if msg := validateInput(op.contactInput); msg != "" {
			return op, invalidOperation(id, "validation_failed", msg)
		}
	case "delete":
		if msg := checkExternalID(id); msg != "" {
			return op, invalidOperation(id, "validation_failed", msg)
		}
		if op.Name != nil || op.Email != nil || op.Tier != nil {
			return op, invalidOperation(id, "validation_failed", "a delete takes external_id alone")
		}
	case "":
		return op, invalidOperation(id, "invalid_operation", "op is required (upsert or delete)")
	default:
		return op, invalidOperation(id, "invalid_operation", fmt.Sprintf("unknown op %q (want upsert or delete)", op.Op))
	}
	return op, bulkResult{}
}

// invalidOperation is the 400 result of an operation that was not applied.
func invalidOperation(id, code, message string) bulkResult {
	return bulkResult{ExternalID: id, Status: http.StatusBadRequest, Code: code, Message: message}
}

// applyLocked applies a valid bulk operation. s.mu must be held.
func (s *CRMServer) applyLocked(op bulkOperation) bulkResult {
	id := *op.ExternalID
	if op.Op == "delete" {
		if !s.deleteLocked(id) {
			return bulkResult{ExternalID: id, Status: http.StatusNotFound, Code: "not_found", Message: contactNotFound(id)}
		}
		return bulkResult{ExternalID: id, Status: http.StatusNoContent, Code: "deleted", Message: "deleted contact " + id}
	}
	c, created := s.upsertLocked(id, op.contactInput)
	if created {
		return bulkResult{ExternalID: id, Status: http.StatusCreated, Code: "created", Message: "created contact " + c.ID, ID: c.ID}
	}
	return bulkResult{ExternalID: id, Status: http.StatusOK, Code: "updated", Message: "updated contact " + c.ID, ID: c.ID}
}

// getContact handles GET /v1/contacts/{external_id}.
func (s *CRMServer) getContact(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("external_id")
	s.mu.Lock()
	c, exists := s.contacts[id]
	s.mu.Unlock()
	if !exists {
		writeContactNotFound(w, id)
		return
	}
	writeCRMJSON(w, http.StatusOK, c)
}

// contactList is the answer of GET /v1/contacts.
type contactList struct {
	Contacts []Contact `json:"contacts"`
	Count    int       `json:"count"`
}

// listContacts handles GET /v1/contacts: every contact, oldest first.
func (s *CRMServer) listContacts(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	list := make([]Contact, 0, len(s.contacts))
	for _, c := range s.contacts {
		list = append(list, c)
	}
	s.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	writeCRMJSON(w, http.StatusOK, contactList{Contacts: list, Count: len(list)})
}

// applyInput copies the fields of in onto c; absent email and tier become empty.
func applyInput(c *Contact, in contactInput) {
	c.Name = strings.TrimSpace(*in.Name)
	c.Email, c.Tier = "", ""
	if in.Email != nil {
		c.Email = *in.Email
	}
	if in.Tier != nil {
		c.Tier = *in.Tier
	}
}

// crmError is the body of every error answer.
type crmError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeContactNotFound answers 404 for a missing contact.
func writeContactNotFound(w http.ResponseWriter, id string) {
	writeCRMError(w, http.StatusNotFound, "not_found", contactNotFound(id))
}

// contactNotFound says that there is no contact with external id id.
func contactNotFound(id string) string {
	return fmt.Sprintf("no contact with external_id %q", id)
}

// writeCRMError answers status with a JSON error body.
func writeCRMError(w http.ResponseWriter, status int, code, message string) {
	writeCRMJSON(w, status, crmError{Code: code, Message: message})
}

// writeCRMJSON answers status with v encoded as JSON.
func writeCRMJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"code":"internal_error","message":"cannot encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	w.Write(append(body, '\n')) //nolint:errcheck // the client went away
}

// crmStatusWriter counts the status a handler answers with.
type crmStatusWriter struct {
	http.ResponseWriter
	s       *CRMServer
	written bool
}

// WriteHeader counts the status and passes it on.
func (w *crmStatusWriter) WriteHeader(code int) {
	if !w.written {
		w.written = true
		w.s.answered(code)
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write passes the body on; a body without a status is a 200.
func (w *crmStatusWriter) Write(b []byte) (int, error) {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}
