package queuetest

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The pooled server's DSN goes through a PgBouncer in transaction mode (its
// console says so), and DirectDSN does not.
func TestPooledServerRunsPgBouncerInTransactionMode(t *testing.T) {
	t.Parallel()
	s := NewPooledServer(t)
	ctx := context.Background()
	dsn := s.NewDSN(t)
	if dsn == s.DirectDSN(strings.TrimPrefix(dsn[strings.Index(dsn, "dbname="):], "dbname=")) {
		t.Fatal("DSN and DirectDSN are the same on a pooled server")
	}
	db := openDB(t, dsn)
	if name := currentDatabase(t, db); !strings.HasPrefix(name, "esync_") {
		t.Fatalf("through the pooler: database %q", name)
	}
	// The PgBouncer console (database "pgbouncer") reports its pool mode.
	rows, err := openDB(t, s.DSN("pgbouncer")).QueryContext(ctx, "SHOW CONFIG")
	if err != nil {
		t.Fatal(err)
	}
	{
		defer rows.Close()
		cols, _ := rows.Columns()
		found := false
		for rows.Next() {
			vals := make([]sql.NullString, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			if vals[0].String == "pool_mode" {
				found = true
				if vals[1].String != "transaction" {
					t.Fatalf("pool_mode = %q", vals[1].String)
				}
			}
		}
		if !found {
			t.Fatal("SHOW CONFIG has no pool_mode")
		}
	}
}

// The TLS server takes verify-full connections with the throwaway CA and
// refuses TCP without TLS; the connection is encrypted.
func TestTLSServerVerifyFull(t *testing.T) {
	t.Parallel()
	s := NewTLSServer(t)
	ctx := context.Background()
	dsn := s.NewDSN(t)
	if !strings.Contains(dsn, "sslmode=verify-full") || s.RootCert == "" {
		t.Fatalf("DSN %q, RootCert %q", dsn, s.RootCert)
	}
	for _, mode := range []string{"verify-full", "require", "verify-ca"} {
		db := openDB(t, strings.Replace(dsn, "sslmode=verify-full", "sslmode="+mode, 1))
		var ssl bool
		if err := db.QueryRowContext(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil {
			t.Fatalf("sslmode=%s: %v", mode, err)
		}
		if !ssl {
			t.Fatalf("sslmode=%s: connection not encrypted", mode)
		}
	}
	plain, err := sql.Open("postgres", strings.Replace(dsn, "sslmode=verify-full", "sslmode=disable", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.PingContext(ctx); err == nil {
		t.Fatal("a TCP connection without TLS was accepted")
	}
	// Another CA does not verify the server.
	other := filepath.Join(t.TempDir(), "other.crt")
	files, err := writeCertificates(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(files.rootCert)
	os.WriteFile(other, b, 0o644)
	wrong, _ := sql.Open("postgres", strings.Replace(dsn, s.RootCert, other, 1))
	defer wrong.Close()
	if err := wrong.PingContext(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a server certificate from another CA: %v", err)
	}
}
