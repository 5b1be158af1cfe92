package main

import (
	"os/signal"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"
)

func init() { addCommand(newUICommand) }

// newUICommand is `esync ui`: the web dashboard, served by runUI.
func newUICommand(a *app) *cobra.Command {
	var listen, user string
	var readOnly bool
	cmd := &cobra.Command{
		Use:   "ui [--listen ADDR] [--read-only] [--basic-auth USER]",
		Short: "Serve the web dashboard",
		Long: `Ui serves the web dashboard of the queue until interrupted: counts, tasks
and their details, streams, schedules, CDC controllers and processes, with
retry and cancel. --read-only changes nothing; --basic-auth USER asks for that
user and the password in $` + uiPasswordEnv + ` (never on the command line).`,
		Example: "  esync ui --listen 127.0.0.1:8080\n  ESYNC_UI_PASSWORD=… esync ui --basic-auth ops --read-only",
		Args:    argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			args := []string{"--listen", listen, "--read-only=" + strconv.FormatBool(readOnly)}
			if user != "" {
				args = append(args, "--basic-auth", user)
			}
			return runUI(ctx, d, args, cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&listen, "listen", "127.0.0.1:8080", "address to serve the dashboard on")
	fl.BoolVar(&readOnly, "read-only", false, "show everything, change nothing")
	fl.StringVar(&user, "basic-auth", "", "ask for this user name and the password in $"+uiPasswordEnv)
	return cmd
}
