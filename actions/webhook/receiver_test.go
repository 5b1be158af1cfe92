package webhook_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/esync/queue"
)

// received is one request a receiver got.
type received struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

// receiver is a loopback webhook endpoint. It records every request, in
// order, into a journal it may share with the action under test, and
// answers with the handler registered for the path (204 when there is none).
type receiver struct {
	srv     *httptest.Server
	journal *journal
	answers map[string]http.HandlerFunc
}

// journal records what happened, in order, across servers and actions.
type journal struct {
	mu      sync.Mutex
	entries []string
	reqs    []received
}

func (j *journal) add(entry string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, entry)
}

func (j *journal) Entries() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.entries...)
}

func (j *journal) Requests() []received {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]received(nil), j.reqs...)
}

func newReceiver(t *testing.T, answers map[string]http.HandlerFunc) *receiver {
	t.Helper()
	r := &receiver{journal: &journal{}, answers: answers}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.journal.mu.Lock()
		r.journal.reqs = append(r.journal.reqs, received{req.Method, req.URL.Path, req.Header.Clone(), body})
		r.journal.entries = append(r.journal.entries, req.URL.Path)
		r.journal.mu.Unlock()
		if h := r.answers[req.URL.Path]; h != nil {
			h(w, req)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) URL(path string) string { return r.srv.URL + path }

// status answers with code and a short body.
func status(code int, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

// hang answers only when the client gives up or the test ends.
func hang(t *testing.T) http.HandlerFunc {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // registered after the server: runs first
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}
}

// closedPortURL returns a URL on a loopback port nobody listens on.
func closedPortURL(t *testing.T, path string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + path
}

// taskOf builds a task as the queue hands it to an action.
func taskOf(t *testing.T, raw string) queue.Task {
	t.Helper()
	var m map[string]any
	_ = json.Unmarshal([]byte(raw), &m)
	return queue.WithRetryNotes(queue.Task{ID: 42, Name: "crm.push", Key: "customer:7", Attempt: 2, MaxAttempts: 5, RawData: []byte(raw), Data: m})
}
