package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func init() { addCommand(newProcessesCommand) }

// newProcessesCommand is `esync processes`.
func newProcessesCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "processes",
		Short: "List the processes that run the queue",
		Long: `Processes lists the SyncManagers registered beside the queue, live ones first:
host, pid, version, when it started, its last heartbeat, and the task names
it handles. Stopped or dead processes stay listed for a while.`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			tm, err := a.tasks(cmd.Context())
			if err != nil {
				return err
			}
			ps, err := tm.ListProcesses(cmd.Context())
			if err != nil {
				return err
			}
			if len(ps) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no process is registered")
				return nil
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "HOST\tPID\tSTATE\tVERSION\tSTARTED\tHEARTBEAT\tTASK NAMES")
			for _, p := range ps {
				state := "live"
				switch {
				case !p.Stopped.IsZero():
					state = "stopped"
				case !p.Live:
					state = "dead"
				}
				names := make([]string, len(p.TaskNames))
				for i, n := range p.TaskNames {
					names[i] = shown(n)
				}
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s ago\t%s\n", shown(p.Host), p.PID, state, shown(p.Version),
					p.Started.Local().Format(time.DateTime), time.Since(p.LastHeartbeat).Round(time.Second), strings.Join(names, ","))
			}
			return w.Flush()
		},
	}
}
