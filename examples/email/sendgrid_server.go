package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Message is one message the loopback SendGrid accepted, as it arrived.
type Message struct {
	// ID is the X-Message-Id the server answered with.
	ID string
	// From is the sender's address.
	From string
	// To, CC and BCC are the recipients' addresses.
	To, CC, BCC []string
	// Subject is the subject line; empty for a template that supplies it.
	Subject string
	// Text and HTML are the text/plain and text/html bodies.
	Text, HTML string
	// TemplateID and TemplateData are the dynamic template and its data.
	TemplateID   string
	TemplateData map[string]any
	// Attachments are the attached files, decoded.
	Attachments []File
}

// File is one attachment, its content decoded from base64.
type File struct {
	Filename, Type string
	Content        []byte
}

// Exchange is one well-formed request and the status it was answered with.
type Exchange struct {
	// At is when the request arrived.
	At time.Time
	// To is the first recipient.
	To string
	// Status is the HTTP status of the answer: 202 or 429.
	Status int
}

// SendGridServer is a loopback stand-in for SendGrid's v3 mail/send
// endpoint. It checks requests the way SendGrid does (bearer key, JSON body,
// sender, recipients, subject and content unless a template is named, text
// before HTML, base64 attachments), answers 401 or 400 with SendGrid's
// error list when they are wrong, and 202 Accepted otherwise, recording the
// message. ThrottleOnce makes it answer 429 once for a recipient.
type SendGridServer struct {
	srv *httptest.Server
	key string

	mu        sync.Mutex
	throttle  map[string]time.Duration // recipient -> Retry-After of the 429 still to answer
	attempts  map[string]int           // recipient -> well-formed requests received
	throttled int
	delivered []Message
	exchanges []Exchange
}

// StartSendGrid starts the server on a loopback port; requests must carry
// "Authorization: Bearer <apiKey>".
func StartSendGrid(apiKey string) *SendGridServer {
	s := &SendGridServer{key: apiKey, throttle: map[string]time.Duration{}, attempts: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL is the server's base URL, for email.WithHost.
func (s *SendGridServer) URL() string { return s.srv.URL }

// Close shuts the server down.
func (s *SendGridServer) Close() { s.srv.Close() }

// ThrottleOnce makes the next well-formed request to recipient be answered
// 429 Too Many Requests with a Retry-After of d (whole seconds).
func (s *SendGridServer) ThrottleOnce(recipient string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle[strings.ToLower(recipient)] = d
}

// Attempts returns how many well-formed requests named recipient in To,
// answered 429 or 202.
func (s *SendGridServer) Attempts(recipient string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[strings.ToLower(recipient)]
}

// Throttled returns how many requests were answered 429.
func (s *SendGridServer) Throttled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.throttled
}

// Exchanges returns the well-formed requests in the order they arrived.
func (s *SendGridServer) Exchanges() []Exchange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Exchange(nil), s.exchanges...)
}

// Delivered returns the accepted messages in the order they arrived.
func (s *SendGridServer) Delivered() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.delivered...)
}

type sgEmail struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

// sgRequest is the part of a v3 mail/send body the server reads.
type sgRequest struct {
	Personalizations []struct {
		To           []sgEmail      `json:"to"`
		CC           []sgEmail      `json:"cc"`
		BCC          []sgEmail      `json:"bcc"`
		Subject      string         `json:"subject"`
		TemplateData map[string]any `json:"dynamic_template_data"`
	} `json:"personalizations"`
	From       *sgEmail `json:"from"`
	Subject    string   `json:"subject"`
	TemplateID string   `json:"template_id"`
	Content    []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"content"`
	Attachments []struct {
		Content     string `json:"content"`
		Filename    string `json:"filename"`
		Type        string `json:"type"`
		Disposition string `json:"disposition"`
		ContentID   string `json:"content_id"`
	} `json:"attachments"`
}

// sgError is one entry of SendGrid's error list.
type sgError struct {
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func answer(w http.ResponseWriter, status int, errs ...sgError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"errors": errs})
}

func (s *SendGridServer) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path != "/v3/mail/send":
		answer(w, http.StatusNotFound, sgError{Message: "not found"})
		return
	case r.Method != http.MethodPost:
		answer(w, http.StatusMethodNotAllowed, sgError{Message: "method not allowed"})
		return
	case r.Header.Get("Authorization") != "Bearer "+s.key:
		answer(w, http.StatusUnauthorized, sgError{Message: "The provided authorization grant is invalid, expired, or revoked"})
		return
	case !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"):
		answer(w, http.StatusUnsupportedMediaType, sgError{Message: "Content-Type should be application/json."})
		return
	}
	var req sgRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 30<<20)).Decode(&req); err != nil {
		answer(w, http.StatusBadRequest, sgError{Message: "Bad Request: " + err.Error()})
		return
	}
	msg, errs := check(req)
	if len(errs) > 0 {
		answer(w, http.StatusBadRequest, errs...)
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, to := range msg.To {
		s.attempts[strings.ToLower(to)]++
	}
	x := Exchange{At: time.Now(), To: msg.To[0], Status: http.StatusAccepted}
	defer func() { s.exchanges = append(s.exchanges, x) }()
	for _, to := range msg.To {
		if d, ok := s.throttle[strings.ToLower(to)]; ok {
			delete(s.throttle, strings.ToLower(to))
			s.throttled++
			x.Status = http.StatusTooManyRequests
			w.Header().Set("Retry-After", strconv.Itoa(int(d.Seconds())))
			answer(w, http.StatusTooManyRequests, sgError{Message: "too many requests"})
			return
		}
	}
	msg.ID = fmt.Sprintf("msg-%d", len(s.delivered)+1)
	s.delivered = append(s.delivered, msg)
	w.Header().Set("X-Message-Id", msg.ID)
	w.WriteHeader(http.StatusAccepted)
}

// check applies SendGrid's rules for a mail/send body and returns the
// message it describes, or the errors SendGrid would answer with.
func check(req sgRequest) (Message, []sgError) {
	var m Message
	var errs []sgError
	fail := func(field, format string, args ...any) {
		errs = append(errs, sgError{Message: fmt.Sprintf(format, args...), Field: field})
	}
	if req.From == nil || !strings.Contains(req.From.Email, "@") {
		fail("from", "The from object must be provided for every email send, with a valid email address.")
	} else {
		m.From = req.From.Email
	}
	if len(req.Personalizations) != 1 {
		fail("personalizations", "This server accepts exactly one personalization; got %d.", len(req.Personalizations))
		return m, errs
	}
	p := req.Personalizations[0]
	if len(p.To) == 0 {
		fail("personalizations.0.to", "The to array is required for all personalization objects, and must have at least one email object with a valid email address.")
	}
	seen := map[string]bool{}
	for _, list := range []struct {
		name  string
		in    []sgEmail
		saved *[]string
	}{{"to", p.To, &m.To}, {"cc", p.CC, &m.CC}, {"bcc", p.BCC, &m.BCC}} {
		for i, a := range list.in {
			field := fmt.Sprintf("personalizations.0.%s.%d.email", list.name, i)
			if !strings.Contains(a.Email, "@") {
				fail(field, "Does not contain a valid address.")
			} else if seen[strings.ToLower(a.Email)] {
				fail(field, "Each email address in the personalization block should be unique between to, cc, and bcc.")
			}
			seen[strings.ToLower(a.Email)] = true
			*list.saved = append(*list.saved, a.Email)
		}
	}
	m.Subject = req.Subject
	if m.Subject == "" {
		m.Subject = p.Subject
	}
	m.TemplateID, m.TemplateData = req.TemplateID, p.TemplateData
	if m.Subject == "" && m.TemplateID == "" {
		fail("subject", "The subject is required. You can get around this requirement if you use a template with a subject defined.")
	}
	if len(req.Content) == 0 && m.TemplateID == "" {
		fail("content", "Unless a valid template_id is provided, the content parameter is required.")
	}
	for i, c := range req.Content {
		switch {
		case c.Value == "":
			fail(fmt.Sprintf("content.%d", i), "The content value must be a string at least one character in length.")
		case c.Type == "text/plain" && i != 0:
			fail("content", "If present, text/plain content must be first, followed by any other content.")
		case c.Type == "text/plain":
			m.Text = c.Value
		case c.Type == "text/html":
			m.HTML = c.Value
		}
	}
	for i, a := range req.Attachments {
		content, err := base64.StdEncoding.DecodeString(a.Content)
		if a.Content == "" || err != nil {
			fail(fmt.Sprintf("attachments.%d.content", i), "The attachment content must be base64 encoded.")
		}
		if a.Filename == "" {
			fail(fmt.Sprintf("attachments.%d.filename", i), "The attachment filename parameter is required.")
		}
		if a.Disposition == "inline" && a.ContentID == "" {
			fail(fmt.Sprintf("attachments.%d.content_id", i), "The content_id parameter is required if the attachment disposition is inline.")
		}
		m.Attachments = append(m.Attachments, File{Filename: a.Filename, Type: a.Type, Content: content})
	}
	return m, errs
}
