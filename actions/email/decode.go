package email

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/esync/queue"
)

// decodeTask reads the message from a task's data, in the current shape or
// the original one. Unknown fields and values of the wrong JSON type are
// errors: a misspelt "bcc" must not silently drop recipients.
func decodeTask(task queue.Task) (Payload, error) {
	raw := bytes.TrimSpace(task.RawData)
	if len(raw) == 0 && task.Data != nil {
		var err error
		if raw, err = json.Marshal(task.Data); err != nil {
			return Payload{}, fmt.Errorf("task data cannot be encoded as JSON: %v", err)
		}
	}
	if len(raw) == 0 || string(raw) == "null" {
		return Payload{}, errors.New("task has no data")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return Payload{}, describeJSONError(err)
	}
	for _, k := range seedKeys {
		if _, ok := fields[k]; ok {
			var e EmailPayload
			if err := decodeStrict(raw, &e); err != nil {
				return Payload{}, fmt.Errorf("original email shape (it has %q): %w", k, err)
			}
			return e.Payload(), nil
		}
	}
	var p Payload
	if err := decodeStrict(raw, &p); err != nil {
		return Payload{}, err
	}
	return p, nil
}

func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	dec.UseNumber() // template data numbers pass through exactly
	if err := dec.Decode(v); err != nil {
		return describeJSONError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data has more JSON after the object")
	}
	return nil
}

// describeJSONError words a decoding error for a task message.
func describeJSONError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Field == "" {
			return fmt.Errorf("data is a JSON %s, not an object", typeErr.Value)
		}
		return fmt.Errorf("field %q is a JSON %s, want %s", typeErr.Field, typeErr.Value, jsonKind(typeErr.Type))
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return fmt.Errorf("data is not valid JSON (at byte %d): %v", syntaxErr.Offset, err)
	}
	return fmt.Errorf("data: %v", err)
}

func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}
