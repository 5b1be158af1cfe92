package queue_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/esync/queue"
)

// Names and keys that no table, log line or terminal can show as they are
// (control characters) or that name nothing (only whitespace) are refused by
// every way of adding a task, and nothing is written.
func TestAddRefusesControlCharactersAndBlankText(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bad := map[string]string{
		"tab":             "customer\t1",
		"newline":         "customer\n1",
		"carriage return": "customer\r1",
		"NUL":             "customer\x001",
		"escape":          "customer\x1b[31m1",
		"bell":            "\a",
		"DEL":             "customer\x7f",
		"C1 control":      "customer\u00851",
		"only spaces":     "   ",
		"only a tab":      "\t",
		"only NBSP":       "\u00a0\u3000",
	}
	for what, text := range bad {
		for _, field := range []string{"name", "key"} {
			name, key := "job", "K"
			if field == "name" {
				name = text
			} else {
				key = text
			}
			check := func(how string, err error) {
				t.Helper()
				if !errors.Is(err, queue.ErrInvalidTask) {
					t.Errorf("%s %s by %s: error %v, want ErrInvalidTask", field, what, how, err)
					return
				}
				if !strings.Contains(err.Error(), field) {
					t.Errorf("%s %s by %s: error %q does not name the %s", field, what, how, err, field)
				}
				if strings.ContainsAny(err.Error(), "\t\n\r\x00\x1b\x7f") {
					t.Errorf("%s %s by %s: the error text itself holds the control character: %q", field, what, how, err)
				}
			}
			check("AddTask", b.tm.AddTask(name, key, nil))
			_, err := b.tm.AddMany(b.ctx, []queue.TaskSpec{{Name: "job", Key: "fine"}, {Name: name, Key: key}})
			check("AddMany", err)
			tx, err := b.db.BeginTx(b.ctx, nil)
			requireNoError(t, err)
			check("AddTaskTx", b.tm.AddTaskTx(b.ctx, tx, name, key, nil))
			requireNoError(t, tx.Commit())
			_, err = b.driver.AddTasks(b.ctx, nil, []queue.NewTask{{Name: name, Key: key, Data: []byte(`{}`)}})
			check("the driver", err)
		}
	}
	if err := b.tm.AddTask("job", "K", nil, queue.WithCreatedBy("cli\nuser")); !errors.Is(err, queue.ErrInvalidTask) {
		t.Errorf("created-by with a newline: %v, want ErrInvalidTask", err)
	}
	if n := b.count(t, `SELECT count(*) FROM %s`); n != 0 {
		t.Fatalf("%d rows written by refused tasks", n)
	}

	// Spaces inside, printable Unicode and emoji stay fine.
	for _, key := range []string{"customer 1", " padded ", "kunde:zoë", "客户:1", "😀", "a\u200db"} {
		if err := b.tm.AddTask("job", key, nil); err != nil {
			t.Errorf("key %q: %v", key, err)
		}
	}
}
