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
	"syscall"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/examples/internal/userdb"
)

// TestCRMSyncExample runs the main job end to end at a small size, twice,
// against a user's database owned by a role that may not create databases
// (so it works in a schema of its own). Each run fails unless the CRM
// matches the table after the initial sync and after the changes and no
// task FAILED; a second run starts clean and converges too. The faults the
// CRM advertises happen and are counted in the summary, the burst line adds
// up, and the user's queue (with crm.* tasks of its own) and customer table
// are untouched.
func TestCRMSyncExample(t *testing.T) {
	user := userdb.New(t, true)
	t.Setenv("DATABASE_URL", user.DSN)
	cfg := config{customers: 24, burst: 12, timeout: 90 * time.Second, faults: 0.1, lost: 0.05,
		burstLimit: 4, hangEvery: 15, crmTimeout: 300 * time.Millisecond}
	for run := 1; run <= 2; run++ {
		var out bytes.Buffer
		cfg.out = &out
		rep, err := runReport(context.Background(), cfg)
		if err != nil {
			t.Fatalf("run %d: %v\n%s", run, err, out.String())
		}
		report := out.String()
		st := rep.crm
		if st.Hung == 0 || st.RateLimited == 0 || st.Faults == 0 || st.ByStatus[429] != st.RateLimited {
			t.Errorf("run %d: the CRM's faults did not all happen: %+v", run, st)
		}
		want := fmt.Sprintf("%d answered 5xx, %d lost answers, %d hung (no answer; the client gave up), %d rate-limited (429)",
			st.Faults, st.LostAnswers, st.Hung, st.RateLimited)
		if !strings.Contains(report, want) {
			t.Errorf("run %d: the summary lacks %q:\n%s", run, want, report)
		}

		tasks := 0
		for _, n := range rep.burst {
			tasks += n
		}
		done, superseded := rep.burst[queue.TaskDone], rep.burst[queue.TaskSuperseded]
		if rep.burstUpdates != cfg.burst || tasks < 1 || tasks > cfg.burst || done < 1 || done+superseded != tasks {
			t.Errorf("run %d: burst of %d: %d tasks %v", run, rep.burstUpdates, tasks, rep.burst)
		}
		line := fmt.Sprintf("burst: %d updates to customer 1; the CDC diff collapsed %d of them (each diff run sees only the row's latest state) into %d tasks; "+
			"the queue superseded %d of those before they ran (newest wins); %d reached the CRM\n", cfg.burst, cfg.burst-tasks, tasks, superseded, done)
		if !strings.Contains(report, line) {
			t.Errorf("run %d: the burst line is not %q:\n%s", run, line, report)
		}
		if rep.customers != rep.contacts || rep.counts[queue.TaskFailed] != 0 {
			t.Errorf("run %d: %d customers, %d contacts, counts %v", run, rep.customers, rep.contacts, rep.counts)
		}
	}
	user.RequireUntouched(t)
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
		// A CRM that admits 20 requests a second needs 15 s for 300
		// customers: the signal comes during the initial sync.
		{"initial sync", false, []string{"--customers", "300", "--rate-limit", "20"}, "CRM on ", syscall.SIGINT, 130},
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
