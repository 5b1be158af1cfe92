package execaction

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/esync/queue"
)

// stdinTask is the JSON document the program reads on its standard input,
// followed by a newline.
type stdinTask struct {
	ID      int64           `json:"id"`
	Name    string          `json:"name"`
	Key     string          `json:"key"`
	Data    json.RawMessage `json:"data"`
	Attempt int             `json:"attempt"`
}

// taskData decodes the task's JSON object with exact numbers and returns it
// with its JSON text. RawData is preferred; Data is used when a caller built
// the task without RawData.
func taskData(task queue.Task) (map[string]any, []byte, error) {
	raw := bytes.TrimSpace(task.RawData)
	if len(raw) == 0 {
		if task.Data == nil {
			return map[string]any{}, []byte("{}"), nil
		}
		b, err := json.Marshal(task.Data)
		if err != nil {
			return nil, nil, fmt.Errorf("task data cannot be encoded as JSON: %w", err)
		}
		raw = b
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var data map[string]any
	if err := dec.Decode(&data); err != nil {
		return nil, nil, fmt.Errorf("task data is not a JSON object: %w", err)
	}
	if dec.More() {
		return nil, nil, fmt.Errorf("task data has text after its JSON object")
	}
	if data == nil {
		return map[string]any{}, []byte("{}"), nil
	}
	return data, raw, nil
}

// stdinDocument renders the task for the program's standard input.
func stdinDocument(task queue.Task, raw []byte) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // the program gets the text as stored, < and & included
	err := enc.Encode(stdinTask{
		ID:      task.ID,
		Name:    task.Name,
		Key:     task.Key,
		Data:    raw,
		Attempt: task.Attempt,
	})
	if err != nil {
		return nil, err
	}
	return b.Bytes(), nil // Encode ends the document with a newline
}
