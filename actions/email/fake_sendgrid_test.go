package email_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// sgEmail, sgRequest: the parts of a v3 mail/send body the fake checks.
type sgEmail struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

type sgPersonalization struct {
	To                  []sgEmail      `json:"to"`
	CC                  []sgEmail      `json:"cc"`
	BCC                 []sgEmail      `json:"bcc"`
	Subject             string         `json:"subject"`
	DynamicTemplateData map[string]any `json:"dynamic_template_data"`
}

type sgContent struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

type sgAttachment struct {
	Content     string `json:"content"`
	Filename    string `json:"filename"`
	Type        string `json:"type"`
	Disposition string `json:"disposition"`
	ContentID   string `json:"content_id"`
}

type sgRequest struct {
	Personalizations []sgPersonalization `json:"personalizations"`
	From             *sgEmail            `json:"from"`
	ReplyTo          *sgEmail            `json:"reply_to"`
	Subject          string              `json:"subject"`
	Content          []sgContent         `json:"content"`
	TemplateID       string              `json:"template_id"`
	Attachments      []sgAttachment      `json:"attachments"`
}

type sgError struct {
	Message string  `json:"message"`
	Field   *string `json:"field"`
	Help    *string `json:"help"`
}

// fakeSendGrid is a loopback server that checks /v3/mail/send requests the
// way SendGrid does and answers 400/401 like it when they are wrong. A
// request that passes is recorded and answered by answer (202 if nil).
type fakeSendGrid struct {
	srv    *httptest.Server
	key    string
	answer http.HandlerFunc

	mu       sync.Mutex
	hits     int
	accepted []sgRequest
	headers  []http.Header
}

const testKey = "SG.test-key.0123456789"

func newFakeSendGrid(t *testing.T, answer http.HandlerFunc) *fakeSendGrid {
	t.Helper()
	f := &fakeSendGrid{key: testKey, answer: answer}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSendGrid) Hits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits
}

// Only returns the single accepted request, failing the test otherwise.
func (f *fakeSendGrid) Only(t *testing.T) (sgRequest, http.Header) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.accepted) != 1 || f.hits != 1 {
		t.Fatalf("fake SendGrid got %d requests, accepted %d; want exactly one", f.hits, len(f.accepted))
	}
	return f.accepted[0], f.headers[0]
}

func writeErrors(w http.ResponseWriter, status int, errs ...sgError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"errors": errs})
}

func field(s string) *string { return &s }

func (f *fakeSendGrid) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.hits++
	f.mu.Unlock()
	if r.URL.Path != "/v3/mail/send" {
		writeErrors(w, http.StatusNotFound, sgError{Message: "not found"})
		return
	}
	if r.Method != http.MethodPost {
		writeErrors(w, http.StatusMethodNotAllowed, sgError{Message: "method not allowed"})
		return
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+f.key {
		// Real SendGrid does not echo the header; this fake does, so that a
		// test of key redaction can fail.
		writeErrors(w, http.StatusUnauthorized, sgError{Message: "The provided authorization grant is invalid, expired, or revoked (got " + got + ")"})
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeErrors(w, http.StatusUnsupportedMediaType, sgError{Message: "Content-Type should be application/json."})
		return
	}
	raw, _ := io.ReadAll(r.Body)
	var req sgRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		writeErrors(w, http.StatusBadRequest, sgError{Message: "Bad Request: " + err.Error()})
		return
	}
	if errs := checkMail(req); len(errs) > 0 {
		writeErrors(w, http.StatusBadRequest, errs...)
		return
	}
	f.mu.Lock()
	f.accepted = append(f.accepted, req)
	f.headers = append(f.headers, r.Header.Clone())
	f.mu.Unlock()
	if f.answer != nil {
		f.answer(w, r)
		return
	}
	w.Header().Set("X-Message-Id", "msg-4711")
	w.WriteHeader(http.StatusAccepted)
}

// checkMail applies SendGrid's rules for a mail/send body.
func checkMail(req sgRequest) []sgError {
	var errs []sgError
	if req.From == nil || req.From.Email == "" {
		errs = append(errs, sgError{Message: "The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter.", Field: field("from")})
	}
	if len(req.Personalizations) == 0 {
		errs = append(errs, sgError{Message: "The personalizations field is required and must have at least one personalization.", Field: field("personalizations")})
	}
	allSubjects := len(req.Personalizations) > 0
	for i, p := range req.Personalizations {
		if len(p.To) == 0 {
			errs = append(errs, sgError{Message: "The to array is required for all personalization objects, and must have at least one email object with a valid email address.", Field: field(fmt.Sprintf("personalizations.%d.to", i))})
		}
		seen := map[string]bool{}
		for _, list := range []struct {
			name  string
			addrs []sgEmail
		}{{"to", p.To}, {"cc", p.CC}, {"bcc", p.BCC}} {
			for j, a := range list.addrs {
				if !strings.Contains(a.Email, "@") {
					errs = append(errs, sgError{Message: "Does not contain a valid address.", Field: field(fmt.Sprintf("personalizations.%d.%s.%d.email", i, list.name, j))})
				}
				k := strings.ToLower(a.Email)
				if seen[k] {
					errs = append(errs, sgError{Message: fmt.Sprintf("Each email address in the personalization block should be unique between to, cc, and bcc. We found the first duplicate instance of [%s] in the personalizations.%d.%s field.", a.Email, i, list.name), Field: field(fmt.Sprintf("personalizations.%d", i))})
				}
				seen[k] = true
			}
		}
		if p.Subject == "" {
			allSubjects = false
		}
	}
	if req.Subject == "" && !allSubjects && req.TemplateID == "" {
		errs = append(errs, sgError{Message: "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.", Field: field("subject")})
	}
	if len(req.Content) == 0 && req.TemplateID == "" {
		errs = append(errs, sgError{Message: "Unless a valid template_id is provided, the content parameter is required. There must be at least one defined content block.", Field: field("content")})
	}
	for i, c := range req.Content {
		if c.Type == "" || c.Value == "" {
			errs = append(errs, sgError{Message: "The content value must be a string at least one character in length.", Field: field(fmt.Sprintf("content.%d", i))})
		}
		if c.Type == "text/plain" && i != 0 {
			errs = append(errs, sgError{Message: "If present, text/plain content must be first, followed by any other content.", Field: field("content")})
		}
	}
	for i, a := range req.Attachments {
		if _, err := base64.StdEncoding.DecodeString(a.Content); a.Content == "" || err != nil {
			errs = append(errs, sgError{Message: "The attachment content must be base64 encoded.", Field: field(fmt.Sprintf("attachments.%d.content", i))})
		}
		if a.Filename == "" {
			errs = append(errs, sgError{Message: "The attachment filename parameter is required.", Field: field(fmt.Sprintf("attachments.%d.filename", i))})
		}
		if a.Disposition == "inline" && a.ContentID == "" {
			errs = append(errs, sgError{Message: "The content_id parameter is required if the attachment disposition is inline.", Field: field(fmt.Sprintf("attachments.%d.content_id", i))})
		}
	}
	return errs
}

// TestFakeSendGridRefusesIncompleteMail proves the fake enforces the rules
// the other tests rely on: without it, a 202 would prove nothing.
func TestFakeSendGridRefusesIncompleteMail(t *testing.T) {
	f := newFakeSendGrid(t, nil)
	post := func(auth, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/v3/mail/send", strings.NewReader(body))
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	good := `{"from":{"email":"a@example.com"},"personalizations":[{"to":[{"email":"b@example.com"}]}],"subject":"s","content":[{"type":"text/plain","value":"x"}]}`
	if code, body := post("Bearer "+testKey, good); code != http.StatusAccepted {
		t.Fatalf("complete mail: %d %s", code, body)
	}
	if code, _ := post("Bearer wrong", good); code != http.StatusUnauthorized {
		t.Errorf("wrong key: %d, want 401", code)
	}
	for name, c := range map[string]struct{ body, field string }{
		"no from":          {`{"personalizations":[{"to":[{"email":"b@example.com"}]}],"subject":"s","content":[{"type":"text/plain","value":"x"}]}`, `"from"`},
		"no to":            {`{"from":{"email":"a@example.com"},"personalizations":[{}],"subject":"s","content":[{"type":"text/plain","value":"x"}]}`, `"personalizations.0.to"`},
		"no subject":       {`{"from":{"email":"a@example.com"},"personalizations":[{"to":[{"email":"b@example.com"}]}],"content":[{"type":"text/plain","value":"x"}]}`, `"subject"`},
		"no content":       {`{"from":{"email":"a@example.com"},"personalizations":[{"to":[{"email":"b@example.com"}]}],"subject":"s"}`, `"content"`},
		"html first":       {`{"from":{"email":"a@example.com"},"personalizations":[{"to":[{"email":"b@example.com"}]}],"subject":"s","content":[{"type":"text/html","value":"x"},{"type":"text/plain","value":"x"}]}`, `"content"`},
		"duplicate":        {`{"from":{"email":"a@example.com"},"personalizations":[{"to":[{"email":"b@example.com"}],"bcc":[{"email":"B@example.com"}]}],"subject":"s","content":[{"type":"text/plain","value":"x"}]}`, `"personalizations.0"`},
		"bad attachment":   {`{"from":{"email":"a@example.com"},"personalizations":[{"to":[{"email":"b@example.com"}]}],"subject":"s","content":[{"type":"text/plain","value":"x"}],"attachments":[{"content":"%%%","filename":"f"}]}`, `"attachments.0.content"`},
		"inline no cid":    {`{"from":{"email":"a@example.com"},"personalizations":[{"to":[{"email":"b@example.com"}]}],"subject":"s","content":[{"type":"text/plain","value":"x"}],"attachments":[{"content":"eA==","filename":"f","disposition":"inline"}]}`, `"attachments.0.content_id"`},
		"template only ok": {`{"from":{"email":"a@example.com"},"personalizations":[{"to":[{"email":"b@example.com"}]}],"template_id":"d-1"}`, ""},
	} {
		code, body := post("Bearer "+testKey, c.body)
		if c.field == "" {
			if code != http.StatusAccepted {
				t.Errorf("%s: %d %s, want 202", name, code, body)
			}
			continue
		}
		if code != http.StatusBadRequest || !strings.Contains(body, `"field":`+c.field) {
			t.Errorf("%s: %d %s, want 400 naming field %s", name, code, body, c.field)
		}
	}
}
