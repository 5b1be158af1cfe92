package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"

	"github.com/esync/queue"
)

// app is what every command shares: where the queue is, and the driver,
// opened on first use so that help and bad command lines never need a
// database.
type app struct {
	dsn, schema, table string
	pooler             bool
	driver             *queue.PostgresDriver
}

// addFlags adds the flags that place the queue to root, for every command.
func (a *app) addFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&a.dsn, "dsn", "", "PostgreSQL connection string (default $DATABASE_URL)")
	f.StringVar(&a.schema, "schema", queue.DefaultSchema, "schema of the queue")
	f.StringVar(&a.table, "table", queue.DefaultTable, "table of the queue")
	f.BoolVar(&a.pooler, "pooler", os.Getenv("ESYNC_POOLER") == "1",
		"the DSN reaches PostgreSQL through a pooler in transaction mode, such as PgBouncer (default $ESYNC_POOLER=1)")
}

// open returns the queue's driver, opening it on first use.
func (a *app) open(context.Context) (*queue.PostgresDriver, error) {
	if a.driver != nil {
		return a.driver, nil
	}
	dsn := a.dsn
	if dsn == "" {
		dsn = os.Getenv("DATABASE_URL")
	}
	if dsn == "" {
		return nil, usagef("no database: pass --dsn or set DATABASE_URL")
	}
	opts := []queue.PostgresOption{queue.WithSchema(a.schema), queue.WithTable(a.table)}
	if a.pooler {
		opts = append(opts, queue.WithPooler())
	}
	d, err := queue.OpenPostgres(dsn, opts...)
	if err != nil {
		return nil, err
	}
	a.driver = d
	return d, nil
}

// tasks returns a TaskManager on the queue.
func (a *app) tasks(ctx context.Context) (*queue.TaskManager, error) {
	d, err := a.open(ctx)
	if err != nil {
		return nil, err
	}
	return queue.NewTaskManager(d), nil
}

// close closes the driver if a command opened it.
func (a *app) close() {
	if a.driver != nil {
		a.driver.Close()
	}
}
