package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func init() { addCommand(newMigrateCommand) }

// newMigrateCommand is `esync migrate`.
func newMigrateCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the queue's tables",
		Long: `Migrate creates the queue's tables (schema.table, the CDC table beside it, the
migration ledger) or upgrades them to this version of esync, in place and
without losing rows. It is idempotent and safe to run from several processes
at once.`,
		Example: "  esync migrate --dsn postgres://app@localhost/app\n  esync migrate --schema jobs --table queue",
		Args:    argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			if err := d.Migrate(cmd.Context()); err != nil {
				return err
			}
			v, err := d.MigrationVersion(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s.%s at migration %d\n", d.Schema(), d.Table(), v)
			return nil
		},
	}
}
