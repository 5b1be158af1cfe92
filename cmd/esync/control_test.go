package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

func TestCLIControl(t *testing.T) {
	t.Parallel()
	bin := buildCLI(t)
	dsn := queuetest.NewDSN(t)
	c := cli{t: t, bin: bin, dsn: dsn}
	c.ok("", "migrate")
	d, err := queue.OpenPostgres(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tm := queue.NewTaskManager(d)
	ctx := context.Background()

	// pause, streams, resume
	if out := c.ok("", "pause", "crm", "--by", "ann"); out != "stream crm paused\n" {
		t.Fatalf("pause: %q", out)
	}
	if out := c.ok("", "streams"); !strings.Contains(out, "crm") || !strings.Contains(out, "ann") {
		t.Fatalf("streams after the pause: %q", out)
	}
	if paused, err := tm.PausedStreams(ctx); err != nil || len(paused) != 1 {
		t.Fatalf("paused streams: %v %v", paused, err)
	}
	if out := c.ok("", "resume", "crm"); out != "stream crm resumed\n" {
		t.Fatalf("resume: %q", out)
	}
	if out := c.ok("", "resume", "crm"); out != "stream crm was not paused\n" {
		t.Fatalf("resume again: %q", out)
	}
	if out := c.ok("", "streams"); out != "no stream is paused\n" {
		t.Fatalf("streams after the resume: %q", out)
	}

	// inspect ID shows the supersede chain
	older, _ := tm.Add(ctx, "crm.update", "customer:z", nil)
	newer, _ := tm.Add(ctx, "crm.update", "customer:z", nil)
	got, err := d.Claim(ctx, queue.ClaimParams{Names: []string{"crm.update"}, Limit: 1, Lease: time.Minute})
	if err != nil || len(got) != 1 || got[0].ID != newer {
		t.Fatalf("claim: %v %v", got, err)
	}
	if _, err := d.Finish(ctx, []queue.Completion{{Lease: got[0].Lease, State: queue.TaskDone}}); err != nil {
		t.Fatal(err)
	}
	if out := c.ok("", "inspect", strconv.FormatInt(newer, 10)); !strings.Contains(out, `"supersedes": [`+"\n    "+strconv.FormatInt(older, 10)) {
		t.Fatalf("inspect of the task that ran: %s, want it to name the task it superseded", out)
	}
	if out := c.ok("", "inspect", strconv.FormatInt(older, 10)); !strings.Contains(out, `"superseded_by": `+strconv.FormatInt(newer, 10)) {
		t.Fatalf("inspect of the superseded task: %s", out)
	}

	// bulk cancel and retry: a count first, changes only with --yes
	for i := range 3 {
		if _, err := tm.Add(ctx, "crm.update", "customer:"+string(rune('a'+i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	other, _ := tm.Add(ctx, "email.send", "email:1", nil)
	if out := c.ok("", "cancel", "--name", "crm.update"); out != "3 tasks match; run again with --yes to cancel them\n" {
		t.Fatalf("cancel without --yes: %q", out)
	}
	if n, _ := tm.Count(ctx, queue.TaskFilter{States: []queue.TaskState{queue.TaskCancelled}}); n != 0 {
		t.Fatalf("%d tasks cancelled without --yes", n)
	}
	if out := c.ok("", "cancel", "--name", "crm.update", "--yes"); out != "cancelled 3 of 3 tasks\n" {
		t.Fatalf("cancel --yes: %q", out)
	}
	if task, _ := tm.Get(ctx, other); task.State != queue.TaskReady {
		t.Fatalf("a task of another name was changed: %s", task.State)
	}
	if out := c.ok("", "retry", "--state", "cancelled", "--key", "customer:b", "--yes"); out != "retried 1 of 1 tasks\n" {
		t.Fatalf("retry --key --yes: %q", out)
	}
	if r := c.run("", "retry", "--state", "bogus"); r.code != exitUsage || !strings.Contains(r.stderr, "FAILED") {
		t.Fatalf("retry with a bad state: exit %d %q", r.code, r.stderr)
	}
	if r := c.run("", "cancel", "1", "--name", "x"); r.code != exitUsage {
		t.Fatalf("cancel with IDs and a filter: exit %d", r.code)
	}

	// cancel a running task, and list the process running it
	sm := queue.NewSyncManager(d)
	cancelled := make(chan error, 1)
	inside := make(chan struct{})
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
		close(inside)
		<-task.Context().Done()
		cancelled <- context.Cause(task.Context())
		return queue.TaskResultRetryFailure, "stopped"
	}), "slow")
	sm.RegisterTaskHandler(queue.TaskActionFunc(func(queue.Task) (queue.TaskResult, queue.TaskMessage) {
		return queue.TaskResultSuccess, ""
	}), "email.send")
	id, _ := tm.Add(ctx, "slow", "k", nil)
	if err := sm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sm.Stop()
	<-inside
	if out := c.ok("", "processes"); !strings.Contains(out, "live") || !strings.Contains(out, "slow") {
		t.Fatalf("processes: %q", out)
	}
	c.ok("", "cancel", strconv.FormatInt(id, 10))
	select {
	case err := <-cancelled:
		if err != queue.ErrCancelRequested {
			t.Fatalf("the running action's context ended with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("esync cancel did not reach the running task")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		task, _ := tm.Get(ctx, id)
		if task.State == queue.TaskCancelled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cancelled running task is %s", task.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
