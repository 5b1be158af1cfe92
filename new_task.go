package queue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of the queue table's columns, checked before anything is written.
const (
	MaxNameLength      = 64  // characters in a task name
	MaxKeyLength       = 255 // characters in a task key
	MaxCreatedByLength = 64  // characters in created-by
)

// validate reports why t cannot be stored, wrapping ErrInvalidTask.
func (t NewTask) validate() error {
	if err := checkText("name", t.Name, MaxNameLength, true); err != nil {
		return err
	}
	if err := checkText("key", t.Key, MaxKeyLength, true); err != nil {
		return err
	}
	if err := checkText("created-by", t.CreatedBy, MaxCreatedByLength, false); err != nil {
		return err
	}
	if t.Delay < 0 {
		return fmt.Errorf("%w: negative delay %s", ErrInvalidTask, t.Delay)
	}
	if t.MaxAttempts < 0 {
		return fmt.Errorf("%w: negative max attempts %d", ErrInvalidTask, t.MaxAttempts)
	}
	if !json.Valid(t.Data) || len(bytes.TrimSpace(t.Data)) == 0 || bytes.TrimSpace(t.Data)[0] != '{' {
		return fmt.Errorf("%w: data must be a JSON object", ErrInvalidTask)
	}
	return nil
}

// checkText reports why s cannot be stored as the named field: empty when
// required, not UTF-8, longer than max characters, only whitespace, or
// holding a control character (C0 such as tab, newline and NUL, DEL, or C1),
// which would break every table, log line and terminal that shows it.
func checkText(field, s string, max int, required bool) error {
	switch {
	case required && s == "":
		return fmt.Errorf("%w: empty %s", ErrInvalidTask, field)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidTask, field)
	case utf8.RuneCountInString(s) > max:
		return fmt.Errorf("%w: %s is %d characters, more than the %d allowed", ErrInvalidTask, field, utf8.RuneCountInString(s), max)
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: %s %s contains the control character %s at byte %d", ErrInvalidTask, field, strconv.QuoteToASCII(s), controlName(r), i)
		}
	}
	if s != "" && strings.TrimSpace(s) == "" {
		return fmt.Errorf("%w: %s %q is only whitespace", ErrInvalidTask, field, s)
	}
	return nil
}

// controlName names a control character for an error message: "NUL
// (U+0000)", "tab (U+0009)", "U+007F".
func controlName(r rune) string {
	names := map[rune]string{0: "NUL", '\t': "tab", '\n': "newline", '\r': "carriage return", 0x1b: "escape", 0x7f: "DEL"}
	if n, ok := names[r]; ok {
		return fmt.Sprintf("%s (U+%04X)", n, r)
	}
	return fmt.Sprintf("U+%04X", r)
}

// encodeData turns task data into a JSON object. nil becomes {}; a
// json.RawMessage or []byte is taken as JSON text as it is.
func encodeData(data any) ([]byte, error) {
	var b []byte
	switch v := data.(type) {
	case nil:
		return []byte("{}"), nil
	case json.RawMessage:
		b = v
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("%w: data cannot be encoded as JSON: %v", ErrInvalidTask, err)
		}
	}
	trimmed := bytes.TrimSpace(b)
	if string(trimmed) == "null" {
		return []byte("{}"), nil
	}
	if !json.Valid(trimmed) || len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fmt.Errorf("%w: data must encode to a JSON object, got %.40q", ErrInvalidTask, trimmed)
	}
	if bytes.Contains(trimmed, []byte(`\u0000`)) {
		return nil, fmt.Errorf("%w: data contains a NUL character, which PostgreSQL jsonb cannot store", ErrInvalidTask)
	}
	return trimmed, nil
}
