package execaction

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// DefaultOutputLimit is how many bytes of each of stdout and stderr the task
// message keeps (the last ones) when Config.OutputLimit is zero.
const DefaultOutputLimit = 4096

// taskEnvPrefix starts the names of the variables that describe the task.
// Config may not set or pass variables with this prefix.
const taskEnvPrefix = "ESYNC_TASK_"

// Config says what program an Action runs and how task data reaches it.
type Config struct {
	// Program is the program to run: a path, or a bare name looked up in
	// the worker's PATH at each run. It is executed directly, never
	// through a shell.
	Program string

	// Args are the program's arguments, one template each. Text is
	// literal; {{field}} is replaced by that field of the task data
	// ({{customer.id}} and {{ids.0}} reach into objects and arrays).
	// Only the fields named here become arguments. Each template yields
	// exactly one argument, whatever the value contains.
	Args []string

	// Env sets environment variables from templates, like Args:
	// {"CUSTOMER_ID": "{{customer_id}}"}. Only the fields named here
	// become environment variables.
	Env map[string]string

	// PassEnv names variables copied from the worker's environment when
	// they are set (HOME, LANG, a token the program needs). PATH is always
	// passed unless Env sets it. Nothing else of the worker's environment
	// reaches the program.
	PassEnv []string

	// Dir is the program's working directory; empty means the worker's.
	Dir string

	// Timeout bounds a run; zero leaves only the task's deadline. When
	// either passes, the program's whole process group is killed and the
	// task is retried.
	Timeout time.Duration

	// KillGrace, when positive, sends SIGTERM to the process group on a
	// timeout and waits this long before SIGKILL. Zero kills at once.
	KillGrace time.Duration

	// PermanentExitCodes are exit statuses that fail the task for good
	// (FAILED). Other non-zero statuses, and deaths by signal, are retried.
	PermanentExitCodes []int

	// OutputLimit is how many bytes of each of stdout and stderr, the last
	// ones, go into the task message. Zero means DefaultOutputLimit.
	OutputLimit int
}

// compiled is a validated Config with its templates parsed.
type compiled struct {
	program   string
	args      []template
	env       []envTemplate
	passEnv   []string
	dir       string
	timeout   time.Duration
	grace     time.Duration
	permanent map[int]bool
	limit     int
}

type envTemplate struct {
	name string
	tmpl template
}

// compile checks cfg and parses its templates.
func compile(cfg Config) (*compiled, error) {
	if strings.TrimSpace(cfg.Program) == "" {
		return nil, errors.New("no program")
	}
	if strings.IndexByte(cfg.Program, 0) >= 0 || strings.IndexByte(cfg.Dir, 0) >= 0 {
		return nil, errors.New("program or directory contains a NUL byte")
	}
	if cfg.Timeout < 0 || cfg.KillGrace < 0 || cfg.OutputLimit < 0 {
		return nil, errors.New("negative Timeout, KillGrace or OutputLimit")
	}
	c := &compiled{
		program:   cfg.Program,
		dir:       cfg.Dir,
		timeout:   cfg.Timeout,
		grace:     cfg.KillGrace,
		permanent: map[int]bool{},
		limit:     cfg.OutputLimit,
	}
	if c.limit == 0 {
		c.limit = DefaultOutputLimit
	}
	for i, a := range cfg.Args {
		t, err := parseTemplate(a)
		if err != nil {
			return nil, fmt.Errorf("argument %d: %w", i+1, err)
		}
		c.args = append(c.args, t)
	}
	names := make([]string, 0, len(cfg.Env))
	for name := range cfg.Env {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := checkEnvName(name); err != nil {
			return nil, fmt.Errorf("Env: %w", err)
		}
		t, err := parseTemplate(cfg.Env[name])
		if err != nil {
			return nil, fmt.Errorf("Env %s: %w", name, err)
		}
		c.env = append(c.env, envTemplate{name: name, tmpl: t})
	}
	for _, name := range cfg.PassEnv {
		if err := checkEnvName(name); err != nil {
			return nil, fmt.Errorf("PassEnv: %w", err)
		}
		if _, set := cfg.Env[name]; set {
			return nil, fmt.Errorf("%s is both in Env and in PassEnv", name)
		}
		c.passEnv = append(c.passEnv, name)
	}
	for _, code := range cfg.PermanentExitCodes {
		if code < 1 || code > 255 {
			return nil, fmt.Errorf("exit code %d is not between 1 and 255", code)
		}
		c.permanent[code] = true
	}
	return c, nil
}

// checkEnvName accepts portable variable names, except the task's own.
func checkEnvName(name string) error {
	if name == "" {
		return errors.New("empty variable name")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			return fmt.Errorf("%q is not a valid variable name", name)
		}
	}
	if strings.HasPrefix(name, taskEnvPrefix) {
		return fmt.Errorf("%s: names starting with %s are set by the action", name, taskEnvPrefix)
	}
	return nil
}
