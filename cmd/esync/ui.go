package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/esync/queue"
	"github.com/esync/queue/web"
)

// uiPasswordEnv holds the basic auth password of `esync ui --basic-auth`:
// a password on the command line would show in ps and shell history.
const uiPasswordEnv = "ESYNC_UI_PASSWORD"

// runUI is `esync ui [--listen ADDR] [--read-only] [--basic-auth USER]`:
// it serves the web dashboard of d until ctx ends. With --basic-auth the
// password comes from $ESYNC_UI_PASSWORD.
func runUI(ctx context.Context, d *queue.PostgresDriver, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("ui", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve the dashboard on")
	readOnly := fs.Bool("read-only", false, "show everything, change nothing")
	user := fs.String("basic-auth", "", "ask for this user name and the password in $"+uiPasswordEnv)
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errors.New("usage: esync ui [--listen 127.0.0.1:8080] [--read-only] [--basic-auth USER] (password in $" + uiPasswordEnv + ")")
	}
	opts := []web.Option{
		web.WithLogger(slog.New(slog.NewTextHandler(out, nil))),
	}
	if *readOnly {
		opts = append(opts, web.WithReadOnly())
	}
	if *user != "" {
		pass := os.Getenv(uiPasswordEnv)
		if pass == "" {
			return fmt.Errorf("--basic-auth %s needs the password in $%s", *user, uiPasswordEnv)
		}
		opts = append(opts, web.WithBasicAuth(*user, pass))
	}
	return web.Serve(ctx, d, *listen, opts...)
}
