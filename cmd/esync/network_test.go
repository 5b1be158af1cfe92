package main

import (
	"strings"
	"testing"

	"github.com/esync/queue/queuetest"
)

// The CLI through a PgBouncer in transaction mode (--pooler, or
// ESYNC_POOLER=1) and over verified TLS: migrate, enqueue, counts, inspect,
// cancel; over TLS, failed connections keep their secrets.
func TestCLIThroughPoolerAndTLS(t *testing.T) {
	bin := buildCLI(t)
	for _, c := range []struct {
		name   string
		server func(testing.TB) *queuetest.Server
		flags  []string
	}{
		{"pgbouncer", queuetest.NewPooledServer, []string{"--pooler"}},
		{"tls", queuetest.NewTLSServer, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := c.server(t)
			cl := cli{t: t, bin: bin, dsn: s.NewDSN(t)}
			run := func(args ...string) string { return cl.ok("", append(args, c.flags...)...) }
			if out := run("migrate"); !strings.Contains(out, "at migration") {
				t.Fatalf("migrate: %q", out)
			}
			for i := range 5 {
				if out := run("enqueue", "crm.update", "customer:"+string(rune('a'+i)), `{"n":1}`); !strings.HasPrefix(out, "added task") {
					t.Fatalf("enqueue: %q", out)
				}
			}
			if out := run("counts"); !strings.Contains(out, "READY        5") {
				t.Fatalf("counts: %q", out)
			}
			if out := run("inspect"); strings.Count(out, "crm.update") != 5 {
				t.Fatalf("inspect: %q", out)
			}
			if out := run("cancel", "--key", "customer:a"); !strings.Contains(out, "cancelled 1") {
				t.Fatalf("cancel: %q", out)
			}
			if s.RootCert != "" {
				checkTLSErrorsHideSecrets(t, bin, s, cl.dsn)
			}
		})
	}
}

// checkTLSErrorsHideSecrets: a TLS connection that fails says so without
// the password or the certificate's path.
func checkTLSErrorsHideSecrets(t *testing.T, bin string, s *queuetest.Server, dsn string) {
	const password = "Cli-Sekr3t-19"
	for _, bad := range []string{
		strings.Replace(dsn, "password=", "password="+password, 1),
		strings.Replace(dsn, "sslrootcert=", "sslrootcert=/tmp/esync-none-5/", 1),
	} {
		r := cli{t: t, bin: bin, dsn: bad}.run("", "counts")
		if r.code == 0 {
			t.Fatalf("counts with a bad DSN succeeded: %s", r.stdout)
		}
		for _, secret := range []string{password, "esync-none-5", s.RootCert} {
			if strings.Contains(r.stderr+r.stdout, secret) {
				t.Fatalf("output shows %q: %s", secret, r.stderr)
			}
		}
	}
}
