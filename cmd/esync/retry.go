package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/esync/queue"
)

func init() { addCommand(newRetryCommand) }

// newRetryCommand is `esync retry ID... | --name N --state S --yes`.
func newRetryCommand(a *app) *cobra.Command {
	var bulk bulkFilter
	cmd := &cobra.Command{
		Use:   "retry ID... | --name NAME --state STATE [--key KEY] --yes",
		Short: "Run FAILED or CANCELLED tasks again",
		Long: `Retry makes FAILED or CANCELLED tasks READY again, with fresh attempts. A task
is not retried when a newer task of its key has started since: that would run
an older change after a newer one.

With --name, --state and/or --key, retry works on every task matching them
(default states FAILED and CANCELLED): it says how many match, and retries
them only with --yes.`,
		Example: "  esync retry 42\n  esync retry 42 43 44\n  esync retry --name crm.update --state failed --yes",
		Args: func(cmd *cobra.Command, args []string) error {
			filtered := bulk.given(cmd) || cmd.Flags().Changed("key")
			switch {
			case filtered && len(args) > 0:
				return usagef("give task IDs or --name/--state/--key, not both")
			case !filtered && len(args) == 0:
				return usagef("%s needs task IDs or --name/--state/--key", cmd.CommandPath())
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
			if len(args) == 0 {
				return bulk.apply(cmd, tm, "retry", "retried", []queue.TaskState{queue.TaskFailed, queue.TaskCancelled}, tm.Retry)
			}
			var errs []error
			for _, id := range ids {
				if err := tm.Retry(cmd.Context(), id); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "task %d is READY again\n", id)
			}
			return errors.Join(errs...)
		},
	}
	bulk.addFlags(cmd, "FAILED,CANCELLED")
	cmd.Flags().StringVar(&bulk.key, "key", "", "only tasks of this key")
	return cmd
}
