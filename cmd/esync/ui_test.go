package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esync/queue/queuetest"
)

// lockedBuffer is the command's output, written by the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestUIServesTheDashboard(t *testing.T) {
	d := queuetest.NewDriver(t)
	// A free loopback port: taken, then let go for the command to bind.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	t.Setenv(uiPasswordEnv, "pw-9f2c")
	ctx, cancel := context.WithCancel(context.Background())
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- runUI(ctx, d, []string{"--listen", addr, "--read-only", "--basic-auth", "ops"}, out) }()

	var resp *http.Response
	for {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		req.SetBasicAuth("ops", "pw-9f2c")
		resp, err = http.DefaultClient.Do(req)
		if err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("esync ui stopped: %v\n%s", err, out.String())
		case <-time.After(5 * time.Millisecond): // not listening yet
		}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %d", resp.StatusCode)
	}
	resp, err = http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET / without the password: %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("esync ui after ctx ended: %v", err)
	}
	if s := out.String(); !strings.Contains(s, "listening") || !strings.Contains(s, "read_only=true") || strings.Contains(s, "pw-9f2c") {
		t.Errorf("esync ui printed:\n%s", s)
	}

	t.Setenv(uiPasswordEnv, "")
	for _, args := range [][]string{{"--basic-auth", "ops"}, {"--listen"}, {"extra"}, {"--bogus"}} {
		if err := runUI(context.Background(), d, args, out); err == nil {
			t.Errorf("esync ui %v: no error", args)
		}
	}
}
