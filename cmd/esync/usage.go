package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/lib/pq"
	"github.com/spf13/cobra"

	"github.com/esync/queue"
)

// usageError is a mistake in the command line or its input: exit status 2.
type usageError struct{ error }

// Unwrap returns the error inside.
func (e usageError) Unwrap() error { return e.error }

// usagef makes a usageError.
func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// isUsage reports whether err is a mistake of the command line or its input:
// a usageError, or a task the queue refuses before writing anything.
func isUsage(err error) bool {
	var u usageError
	return errors.As(err, &u) || errors.Is(err, queue.ErrInvalidTask) || errors.Is(err, queue.ErrInvalidIdentifier)
}

// explain adds a hint to errors a user can fix: a queue that is not
// migrated gets "run `esync migrate`".
func explain(err error, a *app) error {
	var pqErr *pq.Error
	if !errors.As(err, &pqErr) {
		return err
	}
	where := ""
	if a.schema != queue.DefaultSchema || a.table != queue.DefaultTable {
		where = fmt.Sprintf(" --schema %s --table %s", a.schema, a.table)
	}
	switch pqErr.Code {
	case "42P01", "3F000": // undefined_table, invalid_schema_name
		return fmt.Errorf("%w\nthe queue %s.%s does not exist in this database: run `esync migrate%s` first", err, a.schema, a.table, where)
	case "42883": // undefined_function: the queue's functions come with its migrations
		return fmt.Errorf("%w\nthe queue %s.%s is not migrated to this version: run `esync migrate%s` first", err, a.schema, a.table, where)
	}
	return err
}

// taskIDs parses task IDs given as arguments.
func taskIDs(args []string) ([]int64, error) {
	ids := make([]int64, 0, len(args))
	for _, arg := range args {
		id, err := strconv.ParseInt(arg, 10, 64)
		if err != nil || id <= 0 {
			return nil, usagef("task ID %s is not a positive number", quoteArg(arg))
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// argsBetween accepts min to max positional arguments (max < 0: any
// number), naming what they are in its error.
func argsBetween(min, max int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < min:
			return usagef("%s needs %s", cmd.CommandPath(), what)
		case max >= 0 && len(args) > max:
			extra := make([]string, 0, len(args)-max)
			for _, a := range args[max:] {
				extra = append(extra, quoteArg(a))
			}
			return usagef("%s takes %s; unexpected %s", cmd.CommandPath(), what, strings.Join(extra, " "))
		}
		return nil
	}
}

// joinNames lists names for an error message.
func joinNames(names []string) string { return strings.Join(names, ", ") }
