package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/esync/queue"
)

// TaskPayload is the JSON body the Action posts: the task it runs.
type TaskPayload struct {
	// ID is the task's number in the queue.
	ID int64 `json:"id"`
	// Name is the task's name.
	Name string `json:"name"`
	// Key is the task's key.
	Key string `json:"key"`
	// Data is the task's JSON data as stored ({} when it has none).
	Data json.RawMessage `json:"data"`
	// Attempt counts the runs started so far, this one included.
	Attempt int `json:"attempt"`
	// MaxAttempts is how many runs the task may start, when known; a RETRY
	// result on the last attempt is final.
	MaxAttempts int `json:"max_attempts,omitempty"`
}

// Event is the JSON body a lifecycle webhook receives: the task's fields,
// which event this is, and for "success" and "fail" the action's result
// and message.
type Event struct {
	TaskPayload
	// Event is EventStart, EventSuccess or EventFail.
	Event string `json:"event"`
	// Result is the action's result: "SUCCESS", "RETRY" (it will run again
	// if attempts remain) or "ERROR" (it will not). Empty for "start".
	Result queue.TaskResult `json:"result,omitempty"`
	// Message is the action's message. Empty for "start".
	Message string `json:"message,omitempty"`
}

// The events of the lifecycle webhooks, also sent in the X-Esync-Event
// header; the Action sends EventTask.
const (
	EventTask    = "task"
	EventStart   = "start"
	EventSuccess = "success"
	EventFail    = "fail"
)

// payloadOf describes task for a webhook. Task data that is not JSON is an
// error: the receiver would get something other than the task.
func payloadOf(task queue.Task) (TaskPayload, error) {
	data := bytes.TrimSpace(task.RawData)
	switch {
	case len(data) > 0:
		if !json.Valid(data) {
			return TaskPayload{}, errors.New("task data is not valid JSON")
		}
	case task.Data != nil:
		b, err := json.Marshal(task.Data)
		if err != nil {
			return TaskPayload{}, fmt.Errorf("task data cannot be encoded as JSON: %v", err)
		}
		data = b
	default:
		data = []byte("{}")
	}
	return TaskPayload{ID: task.ID, Name: task.Name, Key: task.Key, Data: data, Attempt: task.Attempt, MaxAttempts: task.MaxAttempts}, nil
}
