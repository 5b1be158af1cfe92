package queue_test

import (
	"encoding/json"
	"testing"

	"github.com/esync/queue"
)

func TestTaskExactData(t *testing.T) {
	t.Parallel()
	data, raw, err := queue.Task{RawData: []byte(` {"id": 9007199254740993, "n": null} `)}.ExactData()
	if err != nil || data["id"] != json.Number("9007199254740993") || data["n"] != nil || string(raw) != `{"id": 9007199254740993, "n": null}` {
		t.Fatalf("RawData: %v %q %v", data, raw, err)
	}
	data, raw, err = queue.Task{Data: map[string]any{"a": "b"}}.ExactData()
	if err != nil || data["a"] != "b" || string(raw) != `{"a":"b"}` {
		t.Fatalf("Data fallback: %v %q %v", data, raw, err)
	}
	if data, raw, err := (queue.Task{}).ExactData(); err != nil || len(data) != 0 || string(raw) != "{}" {
		t.Fatalf("no data: %v %q %v", data, raw, err)
	}
	for _, bad := range []string{`[1]`, `"x"`, `{"a":1} {"b":2}`, `{`} {
		if _, _, err := (queue.Task{RawData: []byte(bad)}).ExactData(); err == nil {
			t.Errorf("ExactData accepted %s", bad)
		}
	}
}
