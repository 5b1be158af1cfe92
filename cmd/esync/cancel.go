package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/esync/queue"
)

func init() { addCommand(newCancelCommand) }

// newCancelCommand is `esync cancel ID... | --key KEY | --name N --state S`.
func newCancelCommand(a *app) *cobra.Command {
	var key string
	var bulk bulkFilter
	cmd := &cobra.Command{
		Use:   "cancel ID... | --key KEY | --name NAME --state STATE --yes",
		Short: "Cancel tasks",
		Long: `Cancel moves pending (READY or RETRY) tasks to CANCELLED: the tasks with the
given IDs, or every pending task of one key. A running task given by ID has
its cancellation requested: the process running it cancels the action, and
the task ends CANCELLED unless the action succeeds anyway. A finished task is
left as it is, and reported.

With --name and/or --state, cancel works on every task matching them
(default states READY and RETRY, with --key narrowing further): it says how
many match, and cancels them only with --yes.`,
		Example: "  esync cancel 42 43\n  esync cancel --key customer:42\n  esync cancel --name crm.update --state retry --yes",
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case (key != "" || bulk.given(cmd)) && len(args) > 0:
				return usagef("give task IDs or --key/--name/--state, not both")
			case key == "" && !bulk.given(cmd) && len(args) == 0:
				return usagef("%s needs task IDs, --key KEY or --name/--state", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := taskIDs(args)
			if err != nil {
				return err
			}
			tm, err := a.tasks(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if bulk.given(cmd) {
				bulk.key = key
				return bulk.apply(cmd, tm, "cancel", "cancelled", []queue.TaskState{queue.TaskReady, queue.TaskRetry}, tm.Cancel)
			}
			if key != "" {
				n, err := tm.CancelKey(cmd.Context(), key)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "cancelled %d tasks of key %s\n", n, shown(key))
				return nil
			}
			var errs []error
			for _, id := range ids {
				if err := tm.Cancel(cmd.Context(), id); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(out, "cancelled task %d\n", id)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "cancel every pending task of this key")
	bulk.addFlags(cmd, "READY,RETRY")
	return cmd
}
