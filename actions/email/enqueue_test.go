package email_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/actions/email"
	"github.com/esync/queue/queuetest"
)

// A queued payload is stored under TaskName and the action sends exactly
// it when the task comes back from the database.
func TestEnqueueThenSend(t *testing.T) {
	ctx := context.Background()
	tm := queue.NewTaskManager(queuetest.NewDriver(t))
	p := simplePayload()
	p.Attachments = []email.Attachment{{Content: "aGVsbG8=", Filename: "hello.txt", Type: "text/plain"}}
	id, err := email.Enqueue(ctx, tm, "order:42", p, queue.WithMaxAttempts(3))
	if err != nil {
		t.Fatal(err)
	}
	task, err := tm.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if task.Name != email.TaskName || task.Key != "email:order:42" || task.MaxAttempts != 3 {
		t.Fatalf("stored task %q %q max %d", task.Name, task.Key, task.MaxAttempts)
	}
	f := newFakeSendGrid(t, nil)
	res, msg := actionFor(t, f).Do(task)
	expect(t, res, msg, queue.TaskResultSuccess)
	got, _ := f.Only(t)
	if got.Subject != p.Subject || got.Personalizations[0].To[0].Email != "ann@example.net" ||
		len(got.Attachments) != 1 || got.Attachments[0].Content != "aGVsbG8=" {
		t.Errorf("sent %+v", got)
	}
}

// A bad payload is refused with a clear error and nothing is queued.
func TestEnqueueRefusesBadPayload(t *testing.T) {
	ctx := context.Background()
	tm := queue.NewTaskManager(queuetest.NewDriver(t))
	for _, c := range []struct {
		name string
		edit func(*email.Payload)
		want string
	}{
		{"bad address", func(p *email.Payload) { p.To[0].Email = "ann(at)example.net" }, `to[0]: "ann(at)example.net" is not a valid address`},
		{"no recipient", func(p *email.Payload) { p.To = nil }, "to: at least one recipient is required"},
		{"no subject", func(p *email.Payload) { p.Subject = "" }, "subject: required unless a template_id is given"},
		{"no content", func(p *email.Payload) { p.Text = "" }, "text or html is required"},
		{"bad base64", func(p *email.Payload) {
			p.Attachments = []email.Attachment{{Content: "###", Filename: "x.bin"}}
		}, "attachments[0]: content is not valid base64"},
	} {
		p := simplePayload()
		c.edit(&p)
		id, err := email.Enqueue(ctx, tm, "order:1", p)
		if !errors.Is(err, email.ErrInvalidPayload) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: id %d, error %v; want one containing %q", c.name, id, err, c.want)
		}
	}
	if _, err := email.Enqueue(ctx, nil, "order:1", simplePayload()); err == nil {
		t.Error("nil TaskManager accepted")
	}
	if n, err := tm.Count(ctx, queue.TaskFilter{}); err != nil || n != 0 {
		t.Errorf("%d tasks queued (err %v), want none", n, err)
	}
}

// EnqueueTx adds the task only when the caller's transaction commits.
func TestEnqueueTx(t *testing.T) {
	ctx := context.Background()
	d := queuetest.NewDriver(t)
	tm := queue.NewTaskManager(d)

	tx, err := d.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := simplePayload()
	bad.From.Email = "nobody"
	if err := email.EnqueueTx(ctx, tm, tx, "k", bad); !errors.Is(err, email.ErrInvalidPayload) {
		t.Errorf("bad payload in tx: %v", err)
	}
	if err := email.EnqueueTx(ctx, tm, tx, "k", simplePayload()); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if n, _ := tm.Count(ctx, queue.TaskFilter{}); n != 0 {
		t.Fatalf("%d tasks after rollback", n)
	}

	tx, err = d.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := email.EnqueueTx(ctx, tm, tx, "k", simplePayload()); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n, _ := tm.Count(ctx, queue.TaskFilter{Name: email.TaskName, Key: "email:k"}); n != 1 {
		t.Fatalf("%d tasks after commit, want 1", n)
	}
}

// An email's key is namespaced: a CRM task keyed like it does not supersede
// it (dedup is scoped by key across names), while a newer email with the
// same key does.
func TestEnqueueKeyCannotCollide(t *testing.T) {
	ctx := context.Background()
	d := queuetest.NewDriver(t)
	tm := queue.NewTaskManager(d)
	older, err := email.Enqueue(ctx, tm, "customer:42", simplePayload())
	if err != nil {
		t.Fatal(err)
	}
	mail, err := email.Enqueue(ctx, tm, "customer:42", simplePayload())
	if err != nil {
		t.Fatal(err)
	}
	crm, err := tm.Add(ctx, "crm.update", "customer:42", map[string]any{"name": "Ann"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := email.Enqueue(ctx, tm, "email:x", simplePayload()); err != nil {
		t.Fatal(err)
	}
	if n, _ := tm.Count(ctx, queue.TaskFilter{Key: "email:x"}); n != 1 {
		t.Fatal(`a key already starting with "email:" got a second prefix`)
	}
	claimed, err := d.Claim(ctx, queue.ClaimParams{Names: []string{email.TaskName, "crm.update"}, Limit: 10, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]bool{}
	for _, c := range claimed {
		got[c.ID] = true
	}
	if !got[mail] || !got[crm] || got[older] {
		t.Fatalf("claimed %v; want the newer email %d and the CRM task %d, not the superseded email %d", got, mail, crm, older)
	}
	if task, _ := tm.Get(ctx, older); task.State != queue.TaskSuperseded || task.SupersededBy != mail {
		t.Fatalf("older email is %s superseded by %d, want SUPERSEDED by the newer email %d", task.State, task.SupersededBy, mail)
	}
}
