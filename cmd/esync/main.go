// Command esync manages an esync queue from the shell.
//
//	esync migrate                          create or upgrade the queue tables
//	esync enqueue NAME KEY [JSON]          add a task (--delay 10s, --created-by who)
//	esync inspect [ID]                     list tasks (--name, --key, --state, --limit) or show one
//	esync counts [NAME]                    tasks per state
//	esync cancel ID | esync cancel --key K cancel pending tasks
//	esync retry ID                         run a FAILED or CANCELLED task again
//
// The database comes from --dsn or DATABASE_URL; --schema and --table place
// the queue (defaults public.message_queue).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/esync/queue"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "esync:", err)
		os.Exit(1)
	}
}

// errUsage marks a command line that does not parse.
var errUsage = errors.New("usage: esync [--dsn DSN] [--schema S] [--table T] migrate|enqueue|inspect|counts|cancel|retry ...")

func run(ctx context.Context, args []string, out io.Writer) error {
	global := flag.NewFlagSet("esync", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	dsn := global.String("dsn", os.Getenv("DATABASE_URL"), "connection string (default $DATABASE_URL)")
	schema := global.String("schema", queue.DefaultSchema, "schema of the queue")
	table := global.String("table", queue.DefaultTable, "queue table")
	if err := global.Parse(args); err != nil || global.NArg() == 0 {
		return errUsage
	}
	if *dsn == "" {
		return errors.New("no database: pass --dsn or set DATABASE_URL")
	}
	d, err := queue.OpenPostgres(*dsn, queue.WithSchema(*schema), queue.WithTable(*table))
	if err != nil {
		return err
	}
	defer d.Close()
	tm := queue.NewTaskManager(d)
	cmd, rest := global.Arg(0), global.Args()[1:]
	switch cmd {
	case "migrate":
		if err := d.Migrate(ctx); err != nil {
			return err
		}
		v, err := d.MigrationVersion(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s.%s at migration %d\n", d.Schema(), d.Table(), v)
		return nil
	case "enqueue":
		return enqueue(ctx, tm, rest, out)
	case "inspect":
		return inspect(ctx, tm, rest, out)
	case "counts":
		name := ""
		if len(rest) > 0 {
			name = rest[0]
		}
		counts, err := tm.CountByState(ctx, name)
		if err != nil {
			return err
		}
		for _, s := range []queue.TaskState{queue.TaskReady, queue.TaskInProgress, queue.TaskRetry, queue.TaskDone, queue.TaskFailed, queue.TaskCancelled, queue.TaskSuperseded} {
			fmt.Fprintf(out, "%-12s %d\n", s, counts[s])
		}
		return nil
	case "cancel":
		fs := flag.NewFlagSet("cancel", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		key := fs.String("key", "", "cancel every pending task of this key")
		if err := fs.Parse(rest); err != nil {
			return errUsage
		}
		if *key != "" {
			n, err := tm.CancelKey(ctx, *key)
			if err == nil {
				fmt.Fprintf(out, "cancelled %d tasks of key %q\n", n, *key)
			}
			return err
		}
		id, err := taskID(fs.Args())
		if err != nil {
			return err
		}
		if err := tm.Cancel(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(out, "cancelled task %d\n", id)
		return nil
	case "retry":
		id, err := taskID(rest)
		if err != nil {
			return err
		}
		if err := tm.Retry(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(out, "task %d is READY again\n", id)
		return nil
	}
	return fmt.Errorf("unknown command %q; %w", cmd, errUsage)
}

func taskID(args []string) (int64, error) {
	if len(args) != 1 {
		return 0, errors.New("give one task ID")
	}
	id, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("task ID %q is not a positive number", args[0])
	}
	return id, nil
}

func enqueue(ctx context.Context, tm *queue.TaskManager, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("enqueue", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	delay := fs.Duration("delay", 0, "run no sooner than this from now")
	by := fs.String("created-by", "esync-cli", "recorded as the task's creator")
	if err := fs.Parse(args); err != nil || fs.NArg() < 2 || fs.NArg() > 3 {
		return errors.New("usage: esync enqueue [--delay D] [--created-by WHO] NAME KEY [JSON]")
	}
	var data any
	if fs.NArg() == 3 {
		data = json.RawMessage(fs.Arg(2))
	}
	id, err := tm.Add(ctx, fs.Arg(0), fs.Arg(1), data, queue.WithDelay(*delay), queue.WithCreatedBy(*by))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "added task %d\n", id)
	return nil
}

func inspect(ctx context.Context, tm *queue.TaskManager, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	name := fs.String("name", "", "only tasks of this name")
	key := fs.String("key", "", "only tasks of this key")
	state := fs.String("state", "", "only tasks in these states, comma separated (READY,RETRY,...)")
	limit := fs.Int("limit", 50, "most tasks to list")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() == 1 {
		id, err := taskID(fs.Args())
		if err != nil {
			return err
		}
		t, err := tm.Get(ctx, id)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{
			"id": t.ID, "name": t.Name, "key": t.Key, "state": t.State, "data": json.RawMessage(t.RawData),
			"created": t.Created, "created_by": t.CreatedBy, "attempt": t.Attempt, "max_attempts": t.MaxAttempts,
			"run_after": t.RunAfter, "message": t.Message, "superseded_by": t.SupersededBy,
		})
	}
	f := queue.TaskFilter{Name: *name, Key: *key, Limit: *limit}
	if *state != "" {
		for _, s := range strings.Split(*state, ",") {
			st := queue.TaskState(strings.ToUpper(strings.TrimSpace(s)))
			if !st.Valid() {
				return fmt.Errorf("unknown state %q", s)
			}
			f.States = append(f.States, st)
		}
	}
	tasks, err := tm.List(ctx, f)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tNAME\tKEY\tSTATE\tATTEMPT\tCREATED\tMESSAGE")
	for _, t := range tasks {
		msg := t.Message
		if len(msg) > 60 {
			msg = msg[:57] + "..."
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", t.ID, t.Name, t.Key, t.State, t.Attempt, t.MaxAttempts,
			t.Created.Format(time.RFC3339), strings.ReplaceAll(msg, "\n", " "))
	}
	return w.Flush()
}
