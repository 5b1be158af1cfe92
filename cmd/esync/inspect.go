package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/esync/queue"
)

func init() { addCommand(newInspectCommand) }

// newInspectCommand is `esync inspect [ID...]`.
func newInspectCommand(a *app) *cobra.Command {
	var (
		name, key string
		states    []string
		limit     int
		before    int64
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "inspect [ID...]",
		Short: "List tasks, newest first, or show tasks in full",
		Long: `Inspect lists tasks newest first, one line each: ID, name, key, state, attempt,
when it was created, when it may run, and its last message. --name, --key and
--state narrow the list; --limit bounds it and --before pages back.

RUN AFTER is "now" for a READY or RETRY task that is due, the time it becomes
due for one that is not, and "-" for a task that is running or finished.

Keys, names and messages that are not plain printable text are shown quoted
and escaped, so a tab or a newline cannot break the table.

With IDs, inspect prints those tasks in full, each as a JSON object; --json
prints the list that way too, one object a line. A task in full also
carries "errors", the attempts that did not succeed (the last 20: attempt,
when it ended, the state it left, its message), and its supersede chain:
"ran_instead" follows superseded_by to the task that ran instead (the first
10 links and the end; "ran_instead_omitted" counts the links left out,
"ran_instead_unended" says the chain goes on past 1,000 links), and
"supersedes" lists the tasks it superseded, newest first (20;
"supersedes_more" when there are more).`,
		Example: `  esync inspect
  esync inspect --state FAILED --name crm.update
  esync inspect --state ready,in-progress --limit 20
  esync inspect --before 1200
  esync inspect 42 43`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 && (name != "" || key != "" || len(states) > 0 || before != 0 || cmd.Flags().Changed("limit")) {
				return usagef("give task IDs or the list flags (--name, --key, --state, --limit, --before), not both")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := taskIDs(args)
			if err != nil {
				return err
			}
			if limit <= 0 {
				return usagef("--limit %d: give at least 1", limit)
			}
			if before < 0 {
				return usagef("--before %d is not a task ID", before)
			}
			f := queue.TaskFilter{Name: name, Key: key, Limit: limit, NewestFirst: true, BeforeID: before}
			if f.States, err = parseStates(states); err != nil {
				return err
			}
			d, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			if len(ids) > 0 {
				return showTasks(cmd, d, ids)
			}
			tm := queue.NewTaskManager(d)
			tasks, err := tm.List(cmd.Context(), f)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				for _, t := range tasks {
					if err := enc.Encode(taskJSON(t)); err != nil {
						return err
					}
				}
			} else if err := writeTaskTable(cmd.OutOrStdout(), tasks, time.Now()); err != nil {
				return err
			}
			if len(tasks) == limit {
				fmt.Fprintf(cmd.ErrOrStderr(), "(the newest %d shown; --before %d for older ones)\n", limit, tasks[len(tasks)-1].ID)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "only tasks of this name")
	fl.StringVar(&key, "key", "", "only tasks of this key")
	fl.StringSliceVar(&states, "state", nil, "only tasks in these states, comma separated or repeated ("+joinNames(stateNames())+"; case, '-' and '_' do not matter)")
	fl.IntVar(&limit, "limit", 50, "most tasks to list (at least 1)")
	fl.Int64Var(&before, "before", 0, "only tasks older than this task ID (paging)")
	fl.BoolVar(&asJSON, "json", false, "print the list as JSON, one task a line")
	cmd.RegisterFlagCompletionFunc("state", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return stateNames(), cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

// showTasks prints each task in full as a JSON object, in the order asked,
// with its attempts that did not succeed and its supersede chain; tasks
// that cannot be read are reported after the others.
func showTasks(cmd *cobra.Command, d *queue.PostgresDriver, ids []int64) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	var errs []error
	for _, id := range ids {
		t, err := d.GetTask(cmd.Context(), id)
		if errors.Is(err, queue.ErrTaskNotFound) {
			errs = append(errs, fmt.Errorf("task %d: not found", id))
			continue
		}
		if err != nil {
			return err
		}
		out := taskJSON(t)
		if len(t.Errors) > 0 {
			out["errors"] = t.Errors
		}
		chain, err := d.DashboardSupersedeChain(cmd.Context(), t)
		if err != nil {
			return err
		}
		addChain(out, chain)
		if err := enc.Encode(out); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// addChain adds a task's supersede chain to what inspect ID prints:
// ran_instead follows superseded_by to the task that ran instead (the
// links after the first 10 are counted in ran_instead_omitted; past 1,000
// links, ran_instead_unended says the end is not listed), supersedes names
// the tasks this one superseded (supersedes_more: there are more than 20).
func addChain(out map[string]any, c queue.SupersedeChain) {
	if len(c.RanInstead) > 0 {
		type link struct {
			ID    int64           `json:"id"`
			State queue.TaskState `json:"state"`
		}
		var links []link
		for _, t := range c.RanInstead {
			links = append(links, link{t.ID, t.State})
		}
		out["ran_instead"] = links
	}
	if c.Omitted > 0 {
		out["ran_instead_omitted"] = c.Omitted
	}
	if c.Unended {
		out["ran_instead_unended"] = true
	}
	if len(c.Superseded) > 0 {
		var ids []int64
		for _, t := range c.Superseded {
			ids = append(ids, t.ID)
		}
		out["supersedes"] = ids
	}
	if c.SupersededMore {
		out["supersedes_more"] = true
	}
}

// taskJSON is what inspect ID prints for a task.
func taskJSON(t queue.Task) map[string]any {
	out := map[string]any{
		"id": t.ID, "name": t.Name, "key": t.Key, "state": t.State, "data": json.RawMessage(t.RawData),
		"created": t.Created, "created_by": t.CreatedBy, "attempt": t.Attempt, "max_attempts": t.MaxAttempts,
		"run_after": t.RunAfter, "message": t.Message,
	}
	if t.SupersededBy != 0 {
		out["superseded_by"] = t.SupersededBy
	}
	if !t.LastAttempted.IsZero() && t.Attempt > 0 {
		out["last_attempted"] = t.LastAttempted
	}
	if !t.FinishedAt.IsZero() {
		out["finished_at"] = t.FinishedAt
	}
	return out
}

// writeTaskTable prints tasks as an aligned table with every cell made safe.
func writeTaskTable(out io.Writer, tasks []queue.Task, now time.Time) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tNAME\tKEY\tSTATE\tATTEMPT\tCREATED\tRUN AFTER\tMESSAGE")
	for _, t := range tasks {
		msg := shown(shorten(strings.Join(strings.Fields(t.Message), " "), 60))
		if t.Message == "" {
			msg = ""
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", t.ID, shown(t.Name), shown(t.Key), t.State,
			t.Attempt, t.MaxAttempts, t.Created.Format(time.RFC3339), runAfter(t, now), msg)
	}
	return w.Flush()
}

// runAfter says when a task may run: "now" when it is due, its due time
// and how far off that is when it is not, "-" when it is not pending.
func runAfter(t queue.Task, now time.Time) string {
	if t.State != queue.TaskReady && t.State != queue.TaskRetry {
		return "-"
	}
	if !t.RunAfter.After(now) {
		return "now"
	}
	return fmt.Sprintf("%s (in %s)", t.RunAfter.Format(time.RFC3339), t.RunAfter.Sub(now).Round(time.Second))
}
