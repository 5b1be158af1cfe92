package queue

import (
	"strings"
	"testing"

	"github.com/lib/pq"
)

// redactSecrets removes passwords and certificate and key paths, in every
// form a connection string carries them, from error text.
func TestRedactSecretsCoversPasswordsAndCertificatePaths(t *testing.T) {
	t.Parallel()
	cases := []struct {
		dsn     string
		secrets []string
	}{
		{"host=db password=s3cret sslmode=verify-full sslrootcert=/etc/ca/root.crt sslcert=/home/u/c.crt sslkey=/home/u/c.key sslpassword=keypass",
			[]string{"s3cret", "/etc/ca/root.crt", "/home/u/c.crt", "/home/u/c.key", "keypass"}},
		{"host=db password='a b\\'c' sslrootcert='/path with space/root.crt'",
			[]string{"a b'c", "/path with space/root.crt"}},
		{"postgres://bob:p%40ss@db/app?sslmode=verify-full&sslrootcert=%2Fsecret%2Froot.crt&sslkey=/k/client.key",
			[]string{"p@ss", "/secret/root.crt", "/k/client.key"}},
	}
	for _, c := range cases {
		text := "pq: failed: " + strings.Join(c.secrets, " and ") + ": no such file"
		got := redactSecrets(text, c.dsn)
		for _, s := range c.secrets {
			if strings.Contains(got, s) {
				t.Errorf("redactSecrets(%q) = %q still shows %q", text, got, s)
			}
		}
		if !strings.Contains(got, "no such file") {
			t.Errorf("redactSecrets removed more than the secrets: %q", got)
		}
	}
}

// WithPooler's connection string binds in one round trip, for URL and
// key=value forms, and still parses.
func TestWithOneRoundTripBinding(t *testing.T) {
	t.Parallel()
	for _, dsn := range []string{
		"host=db user=bob dbname=app sslmode=require",
		"postgres://bob:pw@db:6432/app?sslmode=require",
		"postgresql://db/app",
	} {
		got := withOneRoundTripBinding(dsn)
		if !strings.Contains(got, "binary_parameters=yes") {
			t.Errorf("%q -> %q", dsn, got)
		}
		c, err := pq.NewConnector(got)
		if err != nil {
			t.Fatalf("%q -> %q does not parse: %v", dsn, got, err)
		}
		_ = c
	}
}

// WithPooler turns prepared statements off and NOTIFY off unless a direct
// LISTEN DSN is given; a too short exclusive lease is refused.
func TestPoolerConfig(t *testing.T) {
	t.Parallel()
	c := newPostgresConfig([]PostgresOption{WithPooler()}).forPooler()
	if c.prepare || c.notify {
		t.Fatalf("WithPooler: prepare %t notify %t, want both off", c.prepare, c.notify)
	}
	c = newPostgresConfig([]PostgresOption{WithPooler(), WithListenDSN("host=direct")}).forPooler()
	if c.prepare || !c.notify {
		t.Fatalf("WithPooler with a listen DSN: prepare %t notify %t, want prepare off, notify on", c.prepare, c.notify)
	}
	if _, err := newPostgresDriver(nil, []PostgresOption{WithExclusiveLease(100 * 1e6)}); err == nil || !strings.Contains(err.Error(), "WithExclusiveLease") {
		t.Fatalf("a 100ms exclusive lease: %v", err)
	}
}
