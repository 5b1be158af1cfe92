// Command esync manages an esync queue from the shell.
//
//	esync migrate                          create or upgrade the queue tables
//	esync enqueue NAME KEY [DATA]          add a task; DATA is JSON, - (stdin) or @file.json
//	esync inspect [ID...]                  list tasks newest first (--name, --key, --state, --limit) or show some
//	esync counts [NAME]                    tasks per state
//	esync cancel ID... | --key K           cancel pending tasks
//	esync retry ID...                      run FAILED or CANCELLED tasks again
//	esync worker --config esync.toml       run the tasks of a configuration file
//	esync completion bash|zsh|fish|powershell
//
// The database comes from --dsn or DATABASE_URL; --schema and --table place
// the queue (default public.message_queue). `esync help CMD` or
// `esync CMD --help` explains a command without touching any database.
//
// Exit status: 0 on success, 1 when the work failed (the database refused,
// a task was not found), 2 when the command line or its input is wrong, 130
// when interrupted.
//
// Each command lives in a file of its own that registers it with addCommand
// in an init function; a new command is a new file.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// commands holds the constructors of esync's subcommands. Each command's
// file adds its own with addCommand in an init function.
var commands []func(*app) *cobra.Command

// addCommand registers a subcommand's constructor.
func addCommand(newCommand func(*app) *cobra.Command) { commands = append(commands, newCommand) }

// execute runs one command line and returns the exit status.
func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{}
	defer a.close()
	root := newRootCommand(a)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var exit exitError
	if errors.As(err, &exit) {
		if exit.msg != "" {
			fmt.Fprintf(stderr, "esync: %s\n", exit.msg)
		}
		return exit.code
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "esync: interrupted")
		return exitInterrupted
	}
	fmt.Fprintf(stderr, "esync: %v\n", explain(err, a))
	if isUsage(err) {
		if cmd.Name() == "help" {
			cmd = root
		}
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	}
	return exitFailure
}

// newRootCommand builds the esync command with every registered
// subcommand.
func newRootCommand(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "esync",
		Short: "Manage an esync task queue in PostgreSQL",
		Long: `esync manages an esync task queue in PostgreSQL: create its tables, add tasks,
list and count them, cancel and retry them.

The database comes from --dsn or $DATABASE_URL; --schema and --table place the
queue (default public.message_queue). Help never touches a database.

Exit status: 0 on success, 1 when the work failed, 2 when the command line or
its input is wrong, 130 when interrupted.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	a.addFlags(root)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usagef("%v\nflags of %s:\n%s", err, cmd.CommandPath(), cmd.Flags().FlagUsages())
	})
	for _, newCommand := range commands {
		root.AddCommand(newCommand(a))
	}
	root.SetHelpCommand(newHelpCommand(root))
	return root
}

// newHelpCommand is `esync help [CMD...]`: help for a command, and a usage
// error naming the valid commands for one that does not exist.
func newHelpCommand(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Long:  "Help prints the help of any command; it never touches a database.",
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return commandNames(root), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := root.Find(args)
			if err != nil {
				return usagef("%v", err)
			}
			if len(rest) > 0 {
				return unknownCommand(target, rest[0])
			}
			return target.Help()
		},
	}
}

// unknownCommand is the usage error for a command that does not exist under
// parent: the mistake, a suggestion when one is close, and every valid
// command.
func unknownCommand(parent *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, parent.CommandPath())
	if s := parent.SuggestionsFor(name); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %q?)", s[0])
	}
	return usagef("%s; valid commands: %s", msg, joinNames(commandNames(parent)))
}

// commandNames lists the subcommands of cmd that a user can run, sorted.
func commandNames(cmd *cobra.Command) []string {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() || c.Name() == "help" {
			names = append(names, c.Name())
		}
	}
	sort.Strings(names)
	return names
}
