package queue_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
)

func TestAddReturnsIncreasingIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)

	var last int64
	for i := range 5 {
		id := b.add(t, "job", fmt.Sprintf("k%d", i%2), map[string]any{"i": i})
		if id <= last {
			t.Fatalf("id %d after %d", id, last)
		}
		last = id
		r := b.row(t, id)
		if r.State != "READY" || r.Name != "job" || r.Data != fmt.Sprintf(`{"i": %d}`, i) || r.Attempts != 0 || r.MaxAttempts != queue.DefaultMaxAttempts {
			t.Fatalf("stored %+v", r)
		}
	}
}

func TestAddTaskSeedForm(t *testing.T) {
	t.Parallel()
	b := setup(t)

	requireNoError(t, b.tm.AddTask("exampleTask", "myKey", map[string]interface{}{"testData": true}))
	requireNoError(t, b.tm.AddTask("exampleTask", "nilData", nil))
	type payload struct {
		Email string `json:"email"`
	}
	requireNoError(t, b.tm.AddTask("exampleTask", "struct", payload{Email: "a@example.com"}))
	requireNoError(t, b.tm.AddTask("exampleTask", "raw", json.RawMessage(` {"raw": [1, 2]} `)))

	want := map[string]string{
		"myKey":   `{"testData": true}`,
		"nilData": `{}`,
		"struct":  `{"email": "a@example.com"}`,
		"raw":     `{"raw": [1, 2]}`,
	}
	program := filepath.Base(os.Args[0])
	for _, r := range b.rows(t) {
		if r.Data != want[r.Key] || r.State != "READY" || r.CreatedBy != program {
			t.Fatalf("task %s: data %s state %s created by %q, want %s READY by %q", r.Key, r.Data, r.State, r.CreatedBy, want[r.Key], program)
		}
		delete(want, r.Key)
	}
	if len(want) != 0 {
		t.Fatalf("tasks missing: %v", want)
	}
	task, err := b.tm.Get(b.ctx, 3)
	requireNoError(t, err)
	var p payload
	requireNoError(t, task.Decode(&p))
	if p.Email != "a@example.com" || task.Data["email"] != "a@example.com" {
		t.Fatalf("decoded %+v from %+v", p, task)
	}
}

func TestAddOptions(t *testing.T) {
	t.Parallel()
	b := setup(t)

	delayed := b.add(t, "job", "delayed", nil, queue.WithDelay(time.Hour))
	later := b.add(t, "job", "later", nil, queue.WithRunAfter(time.Now().Add(time.Hour)))
	if got := b.claim(t, 10); len(got) != 0 {
		t.Fatalf("claimed %v before they are due", claimedIDs(got))
	}
	for _, id := range []int64{delayed, later} {
		r := b.row(t, id)
		if r.State != "READY" || time.Until(r.DoAfter) < 59*time.Minute || time.Until(r.DoAfter) > 61*time.Minute {
			t.Fatalf("task %d: state %s due %s, want READY due in an hour", id, r.State, r.DoAfter)
		}
	}

	past := b.add(t, "job", "past", nil, queue.WithRunAfter(time.Now().Add(-time.Hour)))
	if c := b.claimOne(t); c.ID != past {
		t.Fatalf("claimed %d, want %d", c.ID, past)
	}

	by := b.add(t, "job", "by", nil, queue.WithCreatedBy("crm-sync"), queue.WithMaxAttempts(3))
	task, err := b.tm.Get(b.ctx, by)
	requireNoError(t, err)
	if task.CreatedBy != "crm-sync" || task.MaxAttempts != 3 || b.row(t, by).CreatedBy != "crm-sync" {
		t.Fatalf("task: created by %q max attempts %d", task.CreatedBy, task.MaxAttempts)
	}
}

func TestAddManyTenThousand(t *testing.T) {
	t.Parallel()
	b := setup(t)

	const n = 10000
	specs := make([]queue.TaskSpec, n)
	for i := range specs {
		specs[i] = queue.TaskSpec{Name: "job", Key: fmt.Sprintf("k%d", i%97), Data: map[string]any{"i": i}}
	}
	ids, err := b.tm.AddMany(b.ctx, specs)
	requireNoError(t, err)
	if len(ids) != n {
		t.Fatalf("%d ids, want %d", len(ids), n)
	}
	// Each id is the row of the spec at the same position.
	rs, err := b.db.QueryContext(b.ctx, `SELECT id, (data->>'i')::int, task_key, state FROM `+b.table)
	requireNoError(t, err)
	defer rs.Close()
	pos := make(map[int64]int, n)
	for i, id := range ids {
		pos[id] = i
		if i > 0 && id <= ids[i-1] {
			t.Fatalf("ids not increasing at %d: %d after %d", i, id, ids[i-1])
		}
	}
	rows := 0
	for rs.Next() {
		var id int64
		var i int
		var key, state string
		requireNoError(t, rs.Scan(&id, &i, &key, &state))
		rows++
		// The last task of each key in the call supersedes its earlier ones.
		want := "SUPERSEDED"
		if i >= n-97 {
			want = "READY"
		}
		if p, ok := pos[id]; !ok || p != i || key != specs[i].Key || state != want {
			t.Fatalf("row %d: data i=%d key %s state %s (want %s); ids put it at %d", id, i, key, state, want, p)
		}
	}
	requireNoError(t, rs.Err())
	if rows != n {
		t.Fatalf("%d rows, want %d", rows, n)
	}
}

func TestAddRejectsInvalidTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)

	type tc struct {
		what      string
		name, key string
		data      any
	}
	bad := []tc{
		{"empty name", "", "K", nil},
		{"empty key", "job", "", nil},
		{"key of 256 characters", "job", strings.Repeat("k", 256), nil},
		{"key of 256 multibyte characters", "job", strings.Repeat("é", 256), nil},
		{"name of 65 characters", strings.Repeat("n", 65), "K", nil},
		{"key not UTF-8", "job", "k\xff", nil},
		{"key with NUL", "job", "k\x00", nil},
		{"a channel", "job", "K", make(chan int)},
		{"a func", "job", "K", func() {}},
		{"NaN", "job", "K", math.NaN()},
		{"NaN inside an object", "job", "K", map[string]any{"x": math.Inf(1)}},
		{"a string", "job", "K", "hello"},
		{"an array", "job", "K", []int{1, 2}},
		{"a number", "job", "K", 42},
		{"raw JSON array", "job", "K", json.RawMessage(`[1]`)},
		{"bytes not JSON", "job", "K", []byte("not json")},
		{"empty bytes", "job", "K", []byte{}},
		{"NUL in data", "job", "K", map[string]any{"s": "a\x00b"}},
	}
	for _, c := range bad {
		_, err := b.tm.Add(b.ctx, c.name, c.key, c.data)
		requireErrorIs(t, err, queue.ErrInvalidTask)
		if err := b.tm.AddTask(c.name, c.key, c.data); err == nil {
			t.Fatalf("%s: AddTask accepted it", c.what)
		}
	}
	_, err := b.tm.Add(b.ctx, "job", "K", nil, queue.WithDelay(-time.Second))
	requireErrorIs(t, err, queue.ErrInvalidTask)
	_, err = b.tm.Add(b.ctx, "job", "K", nil, queue.WithMaxAttempts(-1))
	requireErrorIs(t, err, queue.ErrInvalidTask)
	_, err = b.tm.Add(b.ctx, "job", "K", nil, queue.WithCreatedBy(strings.Repeat("c", 65)))
	requireErrorIs(t, err, queue.ErrInvalidTask)
	if n := b.count(t, `SELECT count(*) FROM %s`); n != 0 {
		t.Fatalf("%d rows written by invalid tasks", n)
	}

	// The limits themselves are fine; multibyte characters count as one.
	good := []tc{
		{"key of 255 characters", "job", strings.Repeat("k", 255), nil},
		{"key of 255 multibyte characters", "job", strings.Repeat("é", 255), nil},
		{"key of 255 four-byte characters", "job", strings.Repeat("😀", 255), nil},
		{"name of 64 characters", strings.Repeat("n", 64), "K", nil},
		{"name of 64 multibyte characters", strings.Repeat("ñ", 64), "K", nil},
		{"null data", "job", "K2", json.RawMessage(`null`)},
	}
	for _, c := range good {
		id, err := b.tm.Add(b.ctx, c.name, c.key, c.data)
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if r := b.row(t, id); r.Key != c.key || r.Name != c.name {
			t.Fatalf("%s: stored key %q name %q", c.what, r.Key, r.Name)
		}
	}
}

func TestAddManyOneBadTaskAddsNone(t *testing.T) {
	t.Parallel()
	b := setup(t)

	for _, bad := range []queue.TaskSpec{
		{Name: "job", Key: ""},
		{Name: "job", Key: "K", Data: []string{"not", "an", "object"}},
		{Name: strings.Repeat("n", 65), Key: "K"},
	} {
		specs := make([]queue.TaskSpec, 100)
		for i := range specs {
			specs[i] = queue.TaskSpec{Name: "job", Key: fmt.Sprintf("k%d", i), Data: map[string]any{"i": i}}
		}
		specs[57] = bad
		ids, err := b.tm.AddMany(b.ctx, specs)
		requireErrorIs(t, err, queue.ErrInvalidTask)
		if ids != nil || !strings.Contains(err.Error(), "57") {
			t.Fatalf("ids %v, error %v: want none and the bad task's position", ids, err)
		}
		tx, err := b.db.BeginTx(b.ctx, nil)
		requireNoError(t, err)
		_, err = b.tm.AddManyTx(b.ctx, tx, specs)
		requireErrorIs(t, err, queue.ErrInvalidTask)
		requireNoError(t, tx.Commit())
	}
	// The driver checks too, for callers that go around the TaskManager.
	_, err := b.driver.AddTasks(b.ctx, nil, []queue.NewTask{
		{Name: "job", Key: "K", Data: []byte(`{}`)},
		{Name: "job", Key: "K", Data: []byte(`"x"`)},
	})
	requireErrorIs(t, err, queue.ErrInvalidTask)
	if n := b.count(t, `SELECT count(*) FROM %s`); n != 0 {
		t.Fatalf("%d rows written", n)
	}
	ids, err := b.tm.AddMany(b.ctx, nil)
	if err != nil || len(ids) != 0 {
		t.Fatalf("AddMany of nothing: %v %v", ids, err)
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	b := setup(t)

	_, err := b.tm.Get(b.ctx, 12345)
	requireErrorIs(t, err, queue.ErrTaskNotFound)

	before := time.Now().Add(-time.Second)
	id := b.add(t, "job", "K", map[string]any{"a": 1}, queue.WithCreatedBy("me"))
	task, err := b.tm.Get(b.ctx, id)
	requireNoError(t, err)
	if task.ID != id || task.Key != "K" || task.Name != "job" || task.State != queue.TaskReady || task.CreatedBy != "me" ||
		task.Data["a"] != float64(1) || task.Created.Before(before) || task.Attempt != 0 || task.SupersededBy != 0 ||
		!task.FinishedAt.IsZero() {
		t.Fatalf("got %+v", task)
	}
	if task.Context() == nil {
		t.Fatal("nil context")
	}
}

func TestCounts(t *testing.T) {
	t.Parallel()
	b := setup(t)

	// a: READY, IN PROGRESS, RETRY, DONE, FAILED, CANCELLED; b: READY x2.
	b.add(t, "a", "K1", nil)
	b.finish(t, b.claimOne(t, "a"), queue.TaskDone, 0)
	b.add(t, "a", "K2", nil)
	b.finish(t, b.claimOne(t, "a"), queue.TaskFailed, 0)
	b.add(t, "a", "K3", nil)
	b.finish(t, b.claimOne(t, "a"), queue.TaskRetry, time.Hour)
	b.add(t, "a", "K4", nil)
	b.claimOne(t, "a") // stays IN PROGRESS
	b.add(t, "a", "K5", nil)
	requireNoError(t, b.tm.Cancel(b.ctx, b.add(t, "a", "K6", nil)))
	b.add(t, "b", "K1", nil)
	b.add(t, "b", "K7", nil)

	n, err := b.tm.GetTaskCount("a")
	requireNoError(t, err)
	if n != 3 {
		t.Fatalf("GetTaskCount(a) = %d, want 3 (READY, RETRY, IN PROGRESS)", n)
	}
	if n, err := b.tm.GetTaskCount("b"); err != nil || n != 2 {
		t.Fatalf("GetTaskCount(b) = %d %v, want 2", n, err)
	}
	if n, err := b.tm.GetTaskCount("nobody"); err != nil || n != 0 {
		t.Fatalf("GetTaskCount(nobody) = %d %v, want 0", n, err)
	}

	counts := []struct {
		f    queue.TaskFilter
		want int
	}{
		{queue.TaskFilter{}, 8},
		{queue.TaskFilter{Name: "a"}, 6},
		{queue.TaskFilter{Key: "K1"}, 2},
		{queue.TaskFilter{Name: "b", Key: "K1"}, 1},
		{queue.TaskFilter{States: []queue.TaskState{queue.TaskDone, queue.TaskFailed}}, 2},
		{queue.TaskFilter{Name: "a", States: []queue.TaskState{queue.TaskReady}}, 1},
		{queue.TaskFilter{States: []queue.TaskState{queue.TaskSuperseded}}, 0},
	}
	for _, c := range counts {
		n, err := b.tm.Count(b.ctx, c.f)
		requireNoError(t, err)
		if n != c.want {
			t.Fatalf("Count(%+v) = %d, want %d", c.f, n, c.want)
		}
	}

	byState, err := b.tm.CountByState(b.ctx, "a")
	requireNoError(t, err)
	want := map[queue.TaskState]int{
		queue.TaskReady: 1, queue.TaskInProgress: 1, queue.TaskRetry: 1,
		queue.TaskDone: 1, queue.TaskFailed: 1, queue.TaskCancelled: 1,
	}
	if fmt.Sprint(byState) != fmt.Sprint(want) {
		t.Fatalf("CountByState(a) = %v, want %v", byState, want)
	}
	all, err := b.tm.CountByState(b.ctx, "")
	requireNoError(t, err)
	if all[queue.TaskReady] != 3 || len(all) != 6 {
		t.Fatalf("CountByState() = %v", all)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)

	pending := b.add(t, "job", "K", nil)
	requireNoError(t, b.tm.Cancel(b.ctx, pending))
	r := b.row(t, pending)
	if r.State != "CANCELLED" || !r.FinishedAt.Valid || r.Message == "" {
		t.Fatalf("cancelled task: %+v", r)
	}
	requireErrorIs(t, b.tm.Cancel(b.ctx, pending), queue.ErrNotCancellable)

	retry := b.add(t, "job", "R", nil)
	b.finish(t, b.claimOne(t), queue.TaskRetry, time.Hour)
	requireNoError(t, b.tm.Cancel(b.ctx, retry))
	b.requireState(t, queue.TaskCancelled, retry)

	// A running task's cancellation is requested: it stays IN PROGRESS
	// until its run ends; a run that then succeeds is DONE.
	running := b.add(t, "job", "L", nil)
	c := b.claimOne(t)
	requireNoError(t, b.tm.Cancel(b.ctx, running))
	b.requireState(t, queue.TaskInProgress, running)
	if n := b.count(t, `SELECT count(*) FROM %s WHERE cancel_requested_at IS NOT NULL`); n != 1 {
		t.Fatalf("%d tasks with a cancellation requested, want the running one", n)
	}
	b.finish(t, c, queue.TaskDone, 0)
	requireErrorIs(t, b.tm.Cancel(b.ctx, running), queue.ErrNotCancellable)
	b.requireState(t, queue.TaskDone, running)

	requireErrorIs(t, b.tm.Cancel(b.ctx, 999999), queue.ErrTaskNotFound)
	if got := b.claim(t, 10); len(got) != 0 {
		t.Fatalf("claimed cancelled tasks %v", claimedIDs(got))
	}
}

func TestCancelKey(t *testing.T) {
	t.Parallel()
	b := setup(t)

	b.add(t, "job", "K", nil)
	running := b.claimOne(t)
	r1 := b.add(t, "job", "K", nil)
	r2 := b.add(t, "other", "K", nil, queue.WithDelay(time.Hour))
	keep := b.add(t, "job", "L", nil)

	n, err := b.tm.CancelKey(b.ctx, "K")
	requireNoError(t, err)
	if n != 2 {
		t.Fatalf("CancelKey cancelled %d, want 2", n)
	}
	b.requireState(t, queue.TaskCancelled, r1, r2)
	b.requireState(t, queue.TaskInProgress, running.ID)
	b.requireState(t, queue.TaskReady, keep)
	if n, err := b.tm.CancelKey(b.ctx, "K"); err != nil || n != 0 {
		t.Fatalf("second CancelKey: %d %v", n, err)
	}
	if n, err := b.tm.CancelKey(b.ctx, "nothing"); err != nil || n != 0 {
		t.Fatalf("CancelKey of an unknown key: %d %v", n, err)
	}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	b := setup(t)

	failed := b.add(t, "job", "K", nil, queue.WithMaxAttempts(2))
	b.finish(t, b.claimOne(t), queue.TaskRetry, 0)
	b.finish(t, b.claimOne(t), queue.TaskRetry, 0) // out of attempts: FAILED
	b.requireState(t, queue.TaskFailed, failed)

	requireNoError(t, b.tm.Retry(b.ctx, failed))
	r := b.row(t, failed)
	if r.State != "READY" || r.Attempts != 0 || r.FinishedAt.Valid || r.DoAfter.After(time.Now().Add(time.Second)) {
		t.Fatalf("retried task: %+v", r)
	}
	c := b.claimOne(t)
	if c.ID != failed || c.Attempt != 1 {
		t.Fatalf("claimed %d attempt %d, want %d attempt 1", c.ID, c.Attempt, failed)
	}
	requireErrorIs(t, b.tm.Retry(b.ctx, failed), queue.ErrNotRetryable) // in progress
	b.finish(t, c, queue.TaskDone, 0)
	requireErrorIs(t, b.tm.Retry(b.ctx, failed), queue.ErrNotRetryable) // done

	cancelled := b.add(t, "job", "C", nil)
	requireNoError(t, b.tm.Cancel(b.ctx, cancelled))
	requireNoError(t, b.tm.Retry(b.ctx, cancelled))
	b.requireState(t, queue.TaskReady, cancelled)
	requireErrorIs(t, b.tm.Retry(b.ctx, cancelled), queue.ErrNotRetryable) // ready

	requireErrorIs(t, b.tm.Retry(b.ctx, 999999), queue.ErrTaskNotFound)
}
