package web

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

func TestFinishedMinutesCountTheHourInChunksAndRemember(t *testing.T) {
	t.Parallel()
	d := queuetest.NewDriver(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	table := fmt.Sprintf("%q.%q", d.Schema(), d.Table())
	finish := func(key, state string, ago time.Duration) {
		t.Helper()
		_, err := d.DB().ExecContext(ctx, `INSERT INTO `+table+` (task_name, task_key, state, attempts, finished_at)
			VALUES ('job', $1, $2, 1, now() - make_interval(secs => $3))`, key, state, ago.Seconds())
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		finish(fmt.Sprintf("old%d", i), "DONE", 10*time.Minute)
	}
	finish("f1", "FAILED", 3*time.Minute)
	finish("f2", "FAILED", 3*time.Minute)
	finish("now1", "DONE", 0)
	finish("ancient", "DONE", 2*time.Hour)

	// A budget so small that each page reads one chunk of older minutes.
	f := finishedMinutes{budget: time.Nanosecond}
	read := func() (map[queue.TaskState]int, int) {
		t.Helper()
		h, err := f.lastHour(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		out := map[queue.TaskState]int{}
		for _, c := range h.counts {
			out[c.State] += c.Count
		}
		return out, len(h.unknown)
	}
	got, unknown := read()
	if got[queue.TaskDone] != 1 || got[queue.TaskFailed] != 2 || unknown < 40 {
		t.Fatalf("first read: %v with %d minutes not counted, want the last minutes only (1 DONE, 2 FAILED)", got, unknown)
	}
	reads := 1
	for unknown > 0 {
		if reads++; reads > 20 {
			t.Fatalf("%d minutes still not counted after %d reads", unknown, reads)
		}
		got, unknown = read()
	}
	if got[queue.TaskDone] != 4 || got[queue.TaskFailed] != 2 {
		t.Fatalf("the whole hour: %v, want 4 DONE and 2 FAILED", got)
	}
	// Counted minutes are remembered, not read again (rows removed since
	// stay counted); the current minute is read again.
	if _, err := d.DB().ExecContext(ctx, `DELETE FROM `+table+` WHERE task_key LIKE 'old%'`); err != nil {
		t.Fatal(err)
	}
	finish("now2", "DONE", 0)
	if got, _ := read(); got[queue.TaskDone] != 5 || got[queue.TaskFailed] != 2 {
		t.Fatalf("after more reads: %v, want 5 DONE and 2 FAILED", got)
	}
}
