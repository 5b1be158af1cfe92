package execaction

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/esync/queue"
)

// Action is a queue.TaskAction that runs a configured program once per task.
// It is safe for concurrent use.
type Action struct {
	c *compiled
}

// New checks cfg and returns an Action. It refuses an empty Program,
// unparsable templates (an unclosed {{, a bad field name), invalid or
// reserved variable names, a variable both in Env and PassEnv, exit codes
// outside 1..255, negative durations or limits, and NUL bytes. It does not
// look for the program: one that is missing when a task runs fails that
// task.
func New(cfg Config) (*Action, error) {
	if !processGroups {
		return nil, errors.New("execaction: process groups are not supported on this system")
	}
	c, err := compile(cfg)
	if err != nil {
		return nil, fmt.Errorf("execaction: %w", err)
	}
	return &Action{c: c}, nil
}

// Do runs the program for task and waits for it, within task.Context() and
// Config.Timeout.
//
//   - exit status 0: queue.TaskResultSuccess;
//   - a status listed in PermanentExitCodes, a program that cannot be
//     started (not found, not executable), or task data the templates
//     cannot use (a missing or null field, a NUL byte, a bare argument
//     that would read as an option): queue.TaskResultPermanentFailure,
//     and for bad data the program is not started;
//   - any other status, death by a signal, a timeout or cancellation:
//     queue.TaskResultRetryFailure.
//
// The message gives the exit status and the last bytes of stderr and
// stdout.
func (a *Action) Do(task queue.Task) (queue.TaskResult, queue.TaskMessage) {
	s, err := a.prepare(task)
	if err != nil {
		return queue.TaskResultPermanentFailure, queue.TaskMessage(err.Error())
	}
	ctx := task.Context()
	if a.c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.c.timeout)
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return queue.TaskResultRetryFailure, queue.TaskMessage("not started: " + err.Error())
	}
	if err := checkDir(a.c.dir); err != nil {
		return a.judge(outcome{startErr: err})
	}
	return a.judge(run(ctx, s))
}

// checkDir reports a working directory that is missing or not a directory,
// which the system would otherwise blame on the program.
func checkDir(dir string) error {
	if dir == "" {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("working directory %s: %w", dir, syscall.ENOTDIR)
	}
	return nil
}

// prepare resolves the templates against the task's data.
func (a *Action) prepare(task queue.Task) (spec, error) {
	data, raw, err := task.ExactData()
	if err != nil {
		return spec{}, err
	}
	s := spec{program: a.c.program, dir: a.c.dir, grace: a.c.grace, limit: a.c.limit}
	afterDashes := false
	for i, t := range a.c.args {
		if lit, ok := t.literal(); ok && lit == "--" {
			afterDashes = true
		}
		v, err := t.render(data)
		if err != nil {
			return spec{}, fmt.Errorf("argument %d: %w", i+1, err)
		}
		if t.bare() && strings.HasPrefix(v, "-") && !afterDashes {
			return spec{}, fmt.Errorf("argument %d: field %s starts with '-' and would be read as an option; "+
				"put a literal \"--\" argument before it or use a template like --name={{%[2]s}}", i+1, t.parts[0].field)
		}
		s.args = append(s.args, v)
	}
	if s.env, err = a.environment(task, data); err != nil {
		return spec{}, err
	}
	if s.stdin, err = stdinDocument(task, raw); err != nil {
		return spec{}, err
	}
	return s, nil
}

// environment builds the program's whole environment: PATH (unless Env
// sets it), the PassEnv variables that are set, the Env templates, and the
// ESYNC_TASK_ variables describing the task.
func (a *Action) environment(task queue.Task, data map[string]any) ([]string, error) {
	vars := map[string]string{}
	if path, ok := os.LookupEnv("PATH"); ok {
		vars["PATH"] = path
	}
	for _, name := range a.c.passEnv {
		if v, ok := os.LookupEnv(name); ok {
			vars[name] = v
		}
	}
	for _, e := range a.c.env {
		v, err := e.tmpl.render(data)
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", e.name, err)
		}
		vars[e.name] = v
	}
	vars[taskEnvPrefix+"ID"] = strconv.FormatInt(task.ID, 10)
	vars[taskEnvPrefix+"NAME"] = task.Name
	vars[taskEnvPrefix+"KEY"] = task.Key
	vars[taskEnvPrefix+"ATTEMPT"] = strconv.Itoa(task.Attempt)
	env := make([]string, 0, len(vars))
	for name, v := range vars {
		if strings.IndexByte(v, 0) >= 0 {
			return nil, fmt.Errorf("variable %s contains a NUL byte, which cannot be passed to a program", name)
		}
		env = append(env, name+"="+v)
	}
	sort.Strings(env)
	return env, nil
}

// judge turns how the run ended into a result and message.
func (a *Action) judge(o outcome) (queue.TaskResult, queue.TaskMessage) {
	if o.startErr != nil {
		msg := "cannot start " + a.c.program + ": " + o.startErr.Error()
		if cannotRun(o.startErr) {
			return queue.TaskResultPermanentFailure, queue.TaskMessage(msg)
		}
		return queue.TaskResultRetryFailure, queue.TaskMessage(msg)
	}
	output := o.stderr.section("stderr") + o.stdout.section("stdout")
	switch {
	case o.stopped != nil && errors.Is(o.stopped, context.DeadlineExceeded):
		return queue.TaskResultRetryFailure, queue.TaskMessage("timed out; process group killed (" + o.state.String() + ")" + output)
	case o.stopped != nil:
		return queue.TaskResultRetryFailure, queue.TaskMessage("cancelled; process group killed (" + o.state.String() + ")" + output)
	case o.state.Success():
		return queue.TaskResultSuccess, queue.TaskMessage(o.state.String() + output)
	case o.state.Exited() && a.c.permanent[o.state.ExitCode()]:
		return queue.TaskResultPermanentFailure, queue.TaskMessage(o.state.String() + " (permanent)" + output)
	default:
		return queue.TaskResultRetryFailure, queue.TaskMessage(o.state.String() + output)
	}
}

// cannotRun reports whether a start error will happen again on the next
// attempt: the program or directory is missing, not executable or not a
// program.
func cannotRun(err error) bool {
	return errors.Is(err, exec.ErrNotFound) || errors.Is(err, exec.ErrDot) ||
		errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) ||
		errors.Is(err, syscall.ENOEXEC) || errors.Is(err, syscall.ENOTDIR)
}
