package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/esync/queue"
)

func init() { addCommand(newEnqueueCommand) }

// newEnqueueCommand is `esync enqueue NAME KEY [DATA]`.
func newEnqueueCommand(a *app) *cobra.Command {
	var (
		delay       time.Duration
		runAfter    string
		createdBy   string
		maxAttempts int
	)
	cmd := &cobra.Command{
		Use:   "enqueue NAME KEY [DATA]",
		Short: "Add a task",
		Long: `Enqueue adds one task: NAME picks the action that runs it, KEY says what it is
about, DATA is a JSON object (default {}). DATA can be given as text, as - to
read it from standard input, or as @FILE to read it from a file.

Of several pending tasks with one key only the newest runs; the older ones end
SUPERSEDED. Names and keys must be printable: control characters (tab,
newline, NUL, ...) and text of only whitespace are refused.`,
		Example: `  esync enqueue crm.update customer:42 '{"name":"Ada"}'
  esync enqueue crm.update customer:42 @change.json
  jq -n '{name: "Ada"}' | esync enqueue crm.update customer:42 -
  esync enqueue report.nightly report:2026-12-03 --delay 1h`,
		Args: argsBetween(2, 3, "NAME, KEY and optionally DATA"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data any
			if len(args) == 3 {
				raw, err := readTaskData(args[2], cmd.InOrStdin())
				if err != nil {
					return err
				}
				data = raw
			}
			opts := []queue.AddOption{queue.WithCreatedBy(createdBy), queue.WithMaxAttempts(maxAttempts)}
			switch {
			case delay < 0:
				return usagef("--delay %s is negative", delay)
			case maxAttempts < 0:
				return usagef("--max-attempts %d is negative", maxAttempts)
			case runAfter != "" && delay != 0:
				return usagef("give --delay or --run-after, not both")
			case runAfter != "":
				at, err := time.Parse(time.RFC3339, runAfter)
				if err != nil {
					return usagef("--run-after %s is not an RFC 3339 time such as 2026-12-03T09:00:00Z", quoteArg(runAfter))
				}
				opts = append(opts, queue.WithRunAfter(at))
			default:
				opts = append(opts, queue.WithDelay(delay))
			}
			tm, err := a.tasks(cmd.Context())
			if err != nil {
				return err
			}
			id, err := tm.Add(cmd.Context(), args[0], args[1], data, opts...)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added task %d\n", id)
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&delay, "delay", 0, "run no sooner than this from now (10s, 5m, 1h)")
	f.StringVar(&runAfter, "run-after", "", "run no sooner than this RFC 3339 time")
	f.StringVar(&createdBy, "created-by", "esync-cli", "recorded as the task's creator")
	f.IntVar(&maxAttempts, "max-attempts", 0, "attempts before the task is FAILED (0: the queue's default)")
	return cmd
}
