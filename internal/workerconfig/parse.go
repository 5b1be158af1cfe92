package workerconfig

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Load reads and checks the configuration file at path, expanding ${NAME}
// from the process environment.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, src, os.LookupEnv)
}

// Parse decodes and checks a configuration file's text. name is used in
// errors; lookup gives the environment variables for ${NAME}. Every
// problem found is reported, one per line, with its line and field.
func Parse(name string, src []byte, lookup func(string) (string, bool)) (*Config, error) {
	c := &Config{file: name, src: string(src)}
	md, err := toml.Decode(string(src), c)
	if err != nil {
		var pe toml.ParseError
		var ppe *toml.ParseError
		switch {
		case errors.As(err, &pe):
		case errors.As(err, &ppe):
			pe = *ppe
		default:
			return nil, decodeError(name, err)
		}
		return nil, &Error{File: name, Line: pe.Position.Line, Field: pe.LastKey, Msg: pe.Message}
	}
	var problems []error
	for _, k := range md.Undecoded() {
		problems = append(problems, c.errorAt(k, "unknown field"))
	}
	if len(problems) > 0 {
		return nil, joinProblems(problems)
	}
	if err := c.expandAll(lookup); err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// typeError matches the library's errors for a value of the wrong type:
// toml: line 3 (last key "a.b"): incompatible types: ...
var typeError = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "((?:[^"\\]|\\.)*)"\): (.*)$`)

// decodeError turns an error of the decoder that is not a ParseError into
// an Error with its line and field.
func decodeError(file string, err error) *Error {
	m := typeError.FindStringSubmatch(err.Error())
	if m == nil {
		return &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	field, uerr := strconv.Unquote(`"` + m[2] + `"`)
	if uerr != nil {
		field = m[2]
	}
	return &Error{File: file, Line: line, Field: field, Msg: m[3]}
}

// validate reports every value out of range or combination that cannot
// work; the actions' own checks run when they are built (Register).
func (c *Config) validate() error {
	var problems []error
	add := func(e *Error) { problems = append(problems, e) }
	w, wk := c.Worker, key("worker")
	positive := func(name string, d *Duration, zeroOK bool) {
		if d != nil && (*d < 0 || (*d == 0 && !zeroOK)) {
			add(c.errorAt(with(wk, name), "must be positive, got %s", d.D()))
		}
	}
	positive("poll_interval", w.PollInterval, false)
	positive("lease", w.Lease, false)
	positive("shutdown_timeout", w.ShutdownTimeout, true)
	positive("maintenance_interval", w.MaintenanceInterval, false)
	if w.BatchSize != nil && *w.BatchSize < 1 {
		add(c.errorAt(with(wk, "batch_size"), "must be at least 1, got %d", *w.BatchSize))
	}
	for _, name := range sortedKeys(c.Streams) {
		if s := c.Streams[name]; s.Concurrency < 0 {
			add(c.errorAt(key("streams", name, "concurrency"), "must be at least 1, got %d", s.Concurrency))
		}
	}
	if len(c.Tasks) == 0 && len(c.Schedules) == 0 {
		add(&Error{File: c.file, Msg: "no [tasks.NAME] and no [[schedules]]: the worker would have nothing to do"})
	}
	for _, name := range sortedKeys(c.Tasks) {
		for _, e := range c.validateTask(name, c.Tasks[name]) {
			add(e)
		}
	}
	seen := map[string]int{}
	for i, s := range c.Schedules {
		for _, e := range c.validateSchedule(i, s) {
			add(e)
		}
		if prev, dup := seen[s.Name]; dup && s.Name != "" {
			add(c.scheduleErrorAt(i, key("name"), "schedule %d has this name too; names must differ", prev+1))
		}
		seen[s.Name] = i
	}
	return joinProblems(problems)
}

func (c *Config) validateTask(name string, t Task) []*Error {
	tk := key("tasks", name)
	var out []*Error
	if strings.TrimSpace(name) == "" {
		out = append(out, c.errorAt(tk, "empty task name"))
	}
	actions := []string{}
	for _, a := range []struct {
		name string
		set  bool
	}{{"exec", t.Exec != nil}, {"webhook", t.Webhook != nil}, {"sql", t.SQL != nil}, {"email", t.Email != nil}} {
		if a.set {
			actions = append(actions, a.name)
		}
	}
	switch len(actions) {
	case 0:
		out = append(out, c.errorAt(tk, "no action: give one of exec, webhook, sql, email"))
	case 1:
	default:
		out = append(out, c.errorAt(tk, "more than one action (%s): give one", strings.Join(actions, ", ")))
	}
	if t.Timeout != nil && *t.Timeout <= 0 {
		out = append(out, c.errorAt(with(tk, "timeout"), "must be positive, got %s", t.Timeout.D()))
	}
	if t.MaxAttempts < 0 {
		out = append(out, c.errorAt(with(tk, "max_attempts"), "must not be negative, got %d", t.MaxAttempts))
	}
	if r := t.Retry; r != nil {
		rk := with(tk, "retry")
		switch {
		case r.Constant != nil && (r.Base != 0 || r.Max != 0 || r.Jitter != nil):
			out = append(out, c.errorAt(rk, "constant cannot be combined with base, max or jitter"))
		case r.Constant != nil && *r.Constant < 0:
			out = append(out, c.errorAt(with(rk, "constant"), "must not be negative, got %s", r.Constant.D()))
		case r.Constant == nil && r.Base <= 0:
			out = append(out, c.errorAt(with(rk, "base"), "must be positive (or give constant instead)"))
		case r.Constant == nil && r.Max != 0 && r.Max < r.Base:
			out = append(out, c.errorAt(with(rk, "max"), "must be 0 (no cap) or at least base"))
		case r.Jitter != nil && (*r.Jitter < 0 || *r.Jitter > 1):
			out = append(out, c.errorAt(with(rk, "jitter"), "must be within 0..1, got %g", *r.Jitter))
		}
	}
	return out
}

func (c *Config) validateSchedule(i int, s Schedule) []*Error {
	var out []*Error
	if strings.TrimSpace(s.Name) == "" {
		out = append(out, c.scheduleErrorAt(i, key("name"), "missing: every schedule needs a name (runs are counted by it across processes)"))
	}
	if strings.TrimSpace(s.Stream) == "" {
		out = append(out, c.scheduleErrorAt(i, key("stream"), "missing: the stream the schedule runs in"))
	}
	switch {
	case s.Every == 0 && s.Cron == "":
		out = append(out, c.scheduleErrorAt(i, nil, "give every (an interval) or cron (a cron spec)"))
	case s.Every != 0 && s.Cron != "":
		out = append(out, c.scheduleErrorAt(i, nil, "give every or cron, not both"))
	case s.Every < 0:
		out = append(out, c.scheduleErrorAt(i, key("every"), "must be positive, got %s", s.Every.D()))
	}
	switch {
	case s.SQL == nil && s.Exec == nil:
		out = append(out, c.scheduleErrorAt(i, nil, "no action: give sql or exec"))
	case s.SQL != nil && s.Exec != nil:
		out = append(out, c.scheduleErrorAt(i, nil, "give sql or exec, not both"))
	case s.Exec != nil:
		for j, a := range s.Exec.Args {
			if strings.Contains(a, "{{") {
				out = append(out, c.scheduleErrorAt(i, key("exec", "args"),
					"argument %d names a task field, but a scheduled run has no task data", j+1))
			}
		}
		for _, name := range sortedKeys(s.Exec.Env) {
			if strings.Contains(s.Exec.Env[name], "{{") {
				out = append(out, c.scheduleErrorAt(i, key("exec", "env", name),
					"names a task field, but a scheduled run has no task data"))
			}
		}
	}
	return out
}

// sortedKeys returns the keys of m in order, for reports in a stable order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
