package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func init() {
	addCommand(newPauseCommand)
	addCommand(newResumeCommand)
	addCommand(newStreamsCommand)
}

// newPauseCommand is `esync pause STREAM`.
func newPauseCommand(a *app) *cobra.Command {
	var by string
	cmd := &cobra.Command{
		Use:   "pause STREAM",
		Short: "Pause a stream on every process",
		Long: `Pause stops a stream on every process sharing the queue until it is resumed:
tasks already running finish, no new task of the stream starts and none of
its schedules fires. The pause is kept in the database, so it survives
restarts.`,
		Example: "  esync pause crm\n  esync pause crm --by ann",
		Args:    argsBetween(1, 1, "a stream name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			tm, err := a.tasks(cmd.Context())
			if err != nil {
				return err
			}
			if by == "" {
				by = os.Getenv("USER")
			}
			if err := tm.PauseStream(cmd.Context(), args[0], by); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stream %s paused\n", shown(args[0]))
			return nil
		},
	}
	cmd.Flags().StringVar(&by, "by", "", "who pauses it (default $USER)")
	return cmd
}

// newResumeCommand is `esync resume STREAM`.
func newResumeCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "resume STREAM",
		Short:   "Resume a paused stream",
		Long:    "Resume lets every process run a paused stream again; idle processes are woken at once.",
		Example: "  esync resume crm",
		Args:    argsBetween(1, 1, "a stream name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			tm, err := a.tasks(cmd.Context())
			if err != nil {
				return err
			}
			was, err := tm.ResumeStream(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if !was {
				fmt.Fprintf(cmd.OutOrStdout(), "stream %s was not paused\n", shown(args[0]))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stream %s resumed\n", shown(args[0]))
			return nil
		},
	}
}

// newStreamsCommand is `esync streams`.
func newStreamsCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "streams",
		Short: "List the paused streams",
		Args:  argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			tm, err := a.tasks(cmd.Context())
			if err != nil {
				return err
			}
			paused, err := tm.PausedStreams(cmd.Context())
			if err != nil {
				return err
			}
			if len(paused) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no stream is paused")
				return nil
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "STREAM\tPAUSED AT\tBY")
			for _, p := range paused {
				fmt.Fprintf(w, "%s\t%s\t%s\n", shown(p.Stream), p.PausedAt.Local().Format(time.DateTime), shown(p.PausedBy))
			}
			return w.Flush()
		},
	}
}
