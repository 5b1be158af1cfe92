package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

func init() { addCommand(newCancelCommand) }

// newCancelCommand is `esync cancel ID... | --key KEY`.
func newCancelCommand(a *app) *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "cancel ID... | --key KEY",
		Short: "Cancel pending tasks",
		Long: `Cancel moves pending (READY or RETRY) tasks to CANCELLED: the tasks with the
given IDs, or every pending task of one key. A task that is running or
finished is left as it is, and reported.`,
		Example: "  esync cancel 42 43\n  esync cancel --key customer:42",
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case key != "" && len(args) > 0:
				return usagef("give task IDs or --key, not both")
			case key == "" && len(args) == 0:
				return usagef("%s needs task IDs or --key KEY", cmd.CommandPath())
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
	return cmd
}
