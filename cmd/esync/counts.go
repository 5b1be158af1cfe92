package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func init() { addCommand(newCountsCommand) }

// newCountsCommand is `esync counts [NAME]`.
func newCountsCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "counts [NAME]",
		Short:   "Count tasks per state",
		Long:    "Counts prints how many tasks are in each state, of every name or only of NAME.",
		Example: "  esync counts\n  esync counts crm.update",
		Args:    argsBetween(0, 1, "at most one task NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			tm, err := a.tasks(cmd.Context())
			if err != nil {
				return err
			}
			counts, err := tm.CountByState(cmd.Context(), name)
			if err != nil {
				return err
			}
			for _, s := range allStates {
				fmt.Fprintf(cmd.OutOrStdout(), "%-12s %d\n", s, counts[s])
			}
			return nil
		},
	}
}
