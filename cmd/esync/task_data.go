package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxTaskData bounds task data read from stdin or a file: more than jsonb
// stores.
const maxTaskData = 256 << 20

// readTaskData reads a task's data from a command-line argument: JSON text,
// "-" for standard input or "@path" for a file. It returns nil for no
// argument and a usage error, with the line and column, for anything that
// is not a JSON object.
func readTaskData(arg string, stdin io.Reader) (json.RawMessage, error) {
	var data []byte
	source := "task data"
	switch {
	case arg == "-":
		source = "task data from stdin"
		b, err := io.ReadAll(io.LimitReader(stdin, maxTaskData+1))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", source, err)
		}
		data = b
	case strings.HasPrefix(arg, "@"):
		path := arg[1:]
		source = "task data in " + quoteArg(path)
		f, err := os.Open(path)
		if err != nil {
			return nil, usagef("read task data: %v", err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxTaskData+1))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", source, err)
		}
		data = b
	default:
		data = []byte(arg)
	}
	if len(data) > maxTaskData {
		return nil, usagef("%s is larger than %d MiB", source, maxTaskData>>20)
	}
	if err := checkJSONObject(data); err != nil {
		return nil, usagef("%s %v", source, err)
	}
	return json.RawMessage(bytes.TrimSpace(data)), nil
}

// checkJSONObject says what keeps data from being one JSON object: a syntax
// error with its line and column, or another kind of value.
func checkJSONObject(data []byte) error {
	var v any
	err := json.Unmarshal(data, &v)
	var syntax *json.SyntaxError
	switch {
	case len(bytes.TrimSpace(data)) == 0:
		return errors.New("is empty; give a JSON object such as '{}'")
	case errors.As(err, &syntax):
		line, col := position(data, syntax.Offset)
		return fmt.Errorf("is not valid JSON: line %d, column %d: %v", line, col, err)
	case err != nil:
		return fmt.Errorf("is not valid JSON: %v", err)
	}
	if _, ok := v.(map[string]any); !ok {
		return fmt.Errorf("must be a JSON object ({...}), not %s", kindOf(v))
	}
	return nil
}

// position turns a byte offset into a line and a column, both from 1. The
// offset of a json.SyntaxError is just past the byte that broke.
func position(data []byte, offset int64) (line, col int) {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	if offset > 0 {
		offset-- // the byte that broke
	}
	before := data[:offset]
	line = 1 + bytes.Count(before, []byte("\n"))
	col = 1 + len([]rune(string(before[bytes.LastIndexByte(before, '\n')+1:])))
	return line, col
}

// kindOf names the kind of a decoded JSON value.
func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}
