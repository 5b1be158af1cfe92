package workerconfig

import (
	"errors"
	"fmt"

	"github.com/BurntSushi/toml"
)

// Error is one problem of a configuration file: where it is and what is
// wrong. It never contains a value that came from the environment.
type Error struct {
	File  string // the file's name
	Line  int    // 1-based; 0 when unknown
	Field string // the key, such as tasks."customer.push".exec.program
	Msg   string
}

// Error formats the problem as file:line: field: message.
func (e *Error) Error() string {
	where := e.File
	if e.Line > 0 {
		where = fmt.Sprintf("%s:%d", where, e.Line)
	}
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", where, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", where, e.Field, e.Msg)
}

// errorAt makes an Error for the field at path, with its line, and
// redacts the message.
func (c *Config) errorAt(path toml.Key, format string, args ...any) *Error {
	return &Error{
		File:  c.file,
		Line:  locate(c.src, path, -1),
		Field: path.String(),
		Msg:   c.Redact(fmt.Sprintf(format, args...)),
	}
}

// scheduleErrorAt is errorAt for a field of the i-th schedule (0-based),
// shown as schedules[i+1].field.
func (c *Config) scheduleErrorAt(i int, field toml.Key, format string, args ...any) *Error {
	shown := fmt.Sprintf("schedules[%d]", i+1)
	if name := c.Schedules[i].Name; name != "" {
		shown = fmt.Sprintf("schedules[%d] (%s)", i+1, c.Redact(name))
	}
	if len(field) > 0 {
		shown += "." + field.String()
	}
	return &Error{
		File:  c.file,
		Line:  locate(c.src, with(key("schedules"), field...), i),
		Field: shown,
		Msg:   c.Redact(fmt.Sprintf(format, args...)),
	}
}

// joinProblems joins the problems found, one per line; nil for none.
func joinProblems(problems []error) error {
	if len(problems) == 0 {
		return nil
	}
	return errors.Join(problems...)
}

// key builds a toml.Key.
func key(parts ...string) toml.Key { return toml.Key(parts) }

// with returns k extended by parts, without sharing k's array.
func with(k toml.Key, parts ...string) toml.Key {
	return append(append(toml.Key{}, k...), parts...)
}
