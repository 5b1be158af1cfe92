package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/examples/internal/userdb"
)

// TestCRMSyncExample runs the main job end to end at a small size, in its
// default mode (a batch action calling the CRM's bulk endpoint), twice,
// against a user's database owned by a role that may not create databases
// (so it works in a schema of its own). The CRM admits fewer requests a
// second than the stream may start, so 429s happen and hold the stream.
// See requireConverges for what each run must show; every call and every
// write goes through the bulk endpoint.
func TestCRMSyncExample(t *testing.T) {
	user := userdb.New(t, true)
	t.Setenv("DATABASE_URL", user.DSN)
	cfg := config{customers: 60, burst: 12, batch: 5, callRate: 50, timeout: 90 * time.Second, faults: 0.2, lost: 0.05,
		rateLimit: 10, hangEvery: 10, crmTimeout: 300 * time.Millisecond}
	for run := 1; run <= 2; run++ {
		rep := requireConverges(t, fmt.Sprint("run ", run), cfg)
		if st := rep.crm; st.Bulk != st.Requests || st.BulkWrites != st.Writes() || st.Writes() == 0 {
			t.Errorf("run %d: not every call and write went through the bulk endpoint: %s", run, st)
		}
	}
	user.RequireUntouched(t)
}

// TestCRMSyncExamplePerTask runs the main job with --batch 0: a task
// action per task, one request each (two for a fallback), against a CRM
// that admits fewer requests a second than the stream may start. See
// requireConverges; no call goes to the bulk endpoint.
func TestCRMSyncExamplePerTask(t *testing.T) {
	user := userdb.New(t, true)
	t.Setenv("DATABASE_URL", user.DSN)
	cfg := config{customers: 24, burst: 12, batch: 0, callRate: 50, timeout: 90 * time.Second, faults: 0.1, lost: 0.05,
		rateLimit: 10, hangEvery: 15, crmTimeout: 300 * time.Millisecond}
	rep := requireConverges(t, "--batch 0", cfg)
	if st := rep.crm; st.Bulk != 0 || st.Requests < st.Writes() {
		t.Errorf("--batch 0 made bulk calls or wrote more records than it made calls: %s", st)
	}
	user.RequireUntouched(t)
}

// requireConverges runs the example with cfg and fails the test unless the
// CRM matches the table after the initial sync and after the changes and
// no task FAILED. The faults the CRM advertises happen (5xx, hangs, 429s)
// and are counted in the summary, the line of records, calls, 429s and
// time adds up, and so does the burst line.
func requireConverges(t *testing.T, name string, cfg config) report {
	t.Helper()
	var out bytes.Buffer
	cfg.out = &out
	rep, err := runReport(context.Background(), cfg)
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out.String())
	}
	report := out.String()
	st := rep.crm
	if st.Hung == 0 || st.RateLimited == 0 || st.Faults == 0 || st.ByStatus[429] != st.RateLimited {
		t.Errorf("%s: the CRM's faults did not all happen: %+v", name, st)
	}
	want := fmt.Sprintf("%d answered 5xx, %d lost answers, %d hung (no answer; the client gave up), %d rate-limited (429)",
		st.Faults, st.LostAnswers, st.Hung, st.RateLimited)
	if !strings.Contains(report, want) {
		t.Errorf("%s: the summary lacks %q:\n%s", name, want, report)
	}
	if st.Writes() < rep.customers || rep.elapsed <= 0 {
		t.Errorf("%s: %d writes for %d customers in %s", name, st.Writes(), rep.customers, rep.elapsed)
	}
	want = fmt.Sprintf("\nsync: %d records written to the CRM (%d created, %d updated, %d deleted) in %d API calls (%d bulk), %d answered 429 (rate-limited), in %s\n",
		st.Created+st.Updated+st.Deleted, st.Created, st.Updated, st.Deleted, st.Requests, st.Bulk, st.RateLimited, rep.elapsed.Round(time.Millisecond))
	if !strings.Contains(report, want) {
		t.Errorf("%s: the summary lacks %q:\n%s", name, want, report)
	}

	tasks := 0
	for _, n := range rep.burst {
		tasks += n
	}
	done, superseded := rep.burst[queue.TaskDone], rep.burst[queue.TaskSuperseded]
	if rep.burstUpdates != cfg.burst || tasks < 1 || tasks > cfg.burst || done < 1 || done+superseded != tasks {
		t.Errorf("%s: burst of %d: %d tasks %v", name, rep.burstUpdates, tasks, rep.burst)
	}
	line := fmt.Sprintf("burst: %d updates to customer 1; the CDC diff collapsed %d of them (each diff run sees only the row's latest state) into %d tasks; "+
		"the queue superseded %d of those before they ran (newest wins); %d reached the CRM\n", cfg.burst, cfg.burst-tasks, tasks, superseded, done)
	if !strings.Contains(report, line) {
		t.Errorf("%s: the burst line is not %q:\n%s", name, line, report)
	}
	if rep.customers != rep.contacts || rep.counts[queue.TaskFailed] != 0 {
		t.Errorf("%s: %d customers, %d contacts, counts %v", name, rep.customers, rep.contacts, rep.counts)
	}
	return rep
}

// The stream's rate limit keeps the calls to the CRM under --calls-per-
// second: at 10 a second (windows of 100ms, one call each) no window of
// the limiter sees more than its own call and one whose permit was taken
// at the end of the window before, and the calls spread over at least half
// as many windows as there were calls. Without the limit the stream's
// eight slots would send eight calls at once.
func TestCRMSyncStaysUnderCallRate(t *testing.T) {
	user := userdb.New(t, false)
	t.Setenv("DATABASE_URL", user.DSN)
	var mu sync.Mutex
	var admitted []time.Time
	cfg := config{customers: 150, burst: 5, batch: 10, callRate: 10, timeout: 90 * time.Second, crmTimeout: 5 * time.Second, quiet: true,
		onAdmit: func(at time.Time) {
			mu.Lock()
			admitted = append(admitted, at)
			mu.Unlock()
		}}
	rep, err := runReport(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	n, per := rateWindow(cfg.callRate)
	if n != 1 || per != 100*time.Millisecond {
		t.Fatalf("10 calls a second are %d per %s, want 1 per 100ms", n, per)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(admitted) != rep.crm.Requests || len(admitted) < cfg.customers/cfg.batch {
		t.Fatalf("%d requests admitted of %d, for %d customers in batches of %d", len(admitted), rep.crm.Requests, cfg.customers, cfg.batch)
	}
	perWindow := map[int64]int{} // window (multiples of per since the epoch, as the limiter aligns them) → calls
	for _, at := range admitted {
		perWindow[at.UnixNano()/per.Nanoseconds()]++
	}
	for w, calls := range perWindow {
		if calls > 2*n {
			t.Errorf("%d calls in the window at %s, limit %d per %s: %v", calls, time.Unix(0, w*per.Nanoseconds()).Format("15:04:05.000"), n, per, perWindow)
		}
	}
	if len(perWindow) < len(admitted)/(2*n) {
		t.Errorf("%d calls in %d windows of %s, limit %d per window: %v", len(admitted), len(perWindow), per, n, perWindow)
	}
}

// A signal stops the example cleanly in every mode: the summary is printed,
// the exit status is 128 + the signal (130 for SIGINT), no error is
// logged, and the example's database or schema is dropped.
func TestCRMSyncStopsOnSignal(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "crmsync")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cases := []struct {
		name       string
		restricted bool
		args       []string
		after      string // signal once a line starts so
		sig        syscall.Signal
		code       int
	}{
		// Calls of one record at 20 a second need 15 s for 300 customers:
		// the signal comes during the initial sync.
		{"initial sync", false, []string{"--rows", "300", "--batch", "1", "--calls-per-second", "20"}, "CRM on ", syscall.SIGINT, 130},
		{"follow", true, []string{"--customers", "30", "--follow", "--rate-limit", "0", "--hang-every", "0"}, "changes synced", syscall.SIGINT, 130},
		{"follow, SIGTERM", false, []string{"--customers", "30", "--follow", "--rate-limit", "0", "--hang-every", "0"}, "changes synced", syscall.SIGTERM, 143},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			user := userdb.New(t, c.restricted)
			cmd := exec.Command(bin, c.args...)
			cmd.Env = append(os.Environ(), "DATABASE_URL="+user.DSN)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string, 1000)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			var out strings.Builder
			deadline := time.After(2 * time.Minute)
		wait:
			for {
				select {
				case line, ok := <-lines:
					if !ok {
						cmd.Wait()
						t.Fatalf("exited before %q:\n%s\n%s", c.after, out.String(), stderr.String())
					}
					out.WriteString(line + "\n")
					if strings.HasPrefix(line, c.after) {
						break wait
					}
				case <-deadline:
					cmd.Process.Kill()
					t.Fatalf("no line %q after 2 minutes:\n%s\n%s", c.after, out.String(), stderr.String())
				}
			}
			if err := cmd.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			for line := range lines {
				out.WriteString(line + "\n")
			}
			err = cmd.Wait()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != c.code {
				t.Fatalf("exit %v, want status %d\n%s\n%s", err, c.code, out.String(), stderr.String())
			}
			report := out.String()
			for _, want := range []string{"interrupted (received " + c.sig.String() + "): the sync manager stopped", "\nsummary: ", "\nCRM faults, each retried by the actions: "} {
				if !strings.Contains(report, want) {
					t.Errorf("output lacks %q:\n%s", want, report)
				}
			}
			if strings.Contains(stderr.String(), "context canceled") || strings.Contains(stderr.String(), "sync: ") {
				t.Errorf("errors logged on a clean stop:\n%s", stderr.String())
			}
			user.RequireUntouched(t)
		})
	}
}
