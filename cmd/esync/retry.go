package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

func init() { addCommand(newRetryCommand) }

// newRetryCommand is `esync retry ID...`.
func newRetryCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "retry ID...",
		Short: "Run FAILED or CANCELLED tasks again",
		Long: `Retry makes FAILED or CANCELLED tasks READY again, with fresh attempts. A task
is not retried when a newer task of its key has started since: that would run
an older change after a newer one.`,
		Example: "  esync retry 42\n  esync retry 42 43 44",
		Args:    argsBetween(1, -1, "one or more task IDs"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := taskIDs(args)
			if err != nil {
				return err
			}
			tm, err := a.tasks(cmd.Context())
			if err != nil {
				return err
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
}
