package execaction

import (
	"bytes"
	"encoding/json"

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
