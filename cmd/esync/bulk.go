package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/esync/queue"
)

// bulkFilter selects the tasks of a bulk cancel or retry: by name, state
// and key. Nothing changes without --yes: the command says how many tasks
// match and what it would do.
type bulkFilter struct {
	name, key string
	states    []string
	yes       bool
}

// addFlags adds the filter's flags to cmd; states is what --state means
// when it is not given.
func (b *bulkFilter) addFlags(cmd *cobra.Command, what string) {
	fl := cmd.Flags()
	fl.StringVar(&b.name, "name", "", "only tasks of this name")
	fl.StringSliceVar(&b.states, "state", nil, "only tasks in these states (comma separated; default "+what+")")
	fl.BoolVar(&b.yes, "yes", false, "do it: without it the command only says how many tasks match")
	cmd.RegisterFlagCompletionFunc("state", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return stateNames(), cobra.ShellCompDirectiveNoFileComp
	})
}

// given reports whether a filter flag was set.
func (b *bulkFilter) given(cmd *cobra.Command) bool {
	return cmd.Flags().Changed("name") || cmd.Flags().Changed("state")
}

// apply runs do (to verb; past says it was done) on every task matching
// the filter (in defaults when no --state), once --yes confirms it, and
// says how it went.
func (b *bulkFilter) apply(cmd *cobra.Command, tm *queue.TaskManager, verb, past string, defaults []queue.TaskState, do func(ctx context.Context, id int64) error) error {
	states := defaults
	if len(b.states) > 0 {
		var err error
		if states, err = parseStates(b.states); err != nil {
			return err
		}
	}
	ctx := cmd.Context()
	var ids []int64
	for after := int64(0); ; {
		page, err := tm.List(ctx, queue.TaskFilter{Name: b.name, Key: b.key, States: states, AfterID: after, Limit: 1000})
		if err != nil {
			return err
		}
		for _, t := range page {
			ids = append(ids, t.ID)
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].ID
	}
	out := cmd.OutOrStdout()
	if !b.yes {
		fmt.Fprintf(out, "%d tasks match; run again with --yes to %s them\n", len(ids), verb)
		return nil
	}
	done, failed := 0, 0
	for _, id := range ids {
		if err := do(ctx, id); err != nil {
			failed++
			fmt.Fprintf(cmd.ErrOrStderr(), "task %d: %v\n", id, err)
			continue
		}
		done++
	}
	fmt.Fprintf(out, "%s %d of %d tasks\n", past, done, len(ids))
	if failed > 0 {
		return fmt.Errorf("%d tasks could not be %s", failed, past)
	}
	return nil
}
