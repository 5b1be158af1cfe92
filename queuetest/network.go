package queuetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clusterNetwork is how a local cluster is reached: the port of its socket
// (and of TCP when on), the extra server settings, the PgBouncer to start,
// and the connection strings handed out.
type clusterNetwork struct {
	port        int
	listen      string // listen_addresses; empty: the unix socket only
	extra       string // further -c settings for postgres
	pgbouncer   string // path of the pgbouncer binary; empty: none
	bouncerPort int
	rootCert    string // CA certificate file when TLS is on
	password    string // the postgres role's password when TLS is on
	dsnFor      func(db string) string
	adminDSNFor func(db string) string // nil: dsnFor
}

// configureNetwork writes what the options need into the cluster's
// directory (certificates, pg_hba.conf, pgbouncer.ini) and says how to
// reach the cluster.
func configureNetwork(dir string, cred *syscall.Credential, opt localOptions) (clusterNetwork, error) {
	n := clusterNetwork{port: 5432}
	socketDSN := func(db string) string {
		return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", dir, n.port, db)
	}
	n.dsnFor = socketDSN
	if !opt.tcp && !opt.tls && !opt.pgbouncer {
		return n, nil
	}
	port, err := freePort()
	if err != nil {
		return n, err
	}
	n.port = port
	if opt.tcp || opt.tls {
		n.listen = "127.0.0.1"
		n.dsnFor = func(db string) string {
			return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s sslmode=disable", n.port, db)
		}
	}
	if opt.tls {
		if err := configureTLS(dir, cred, &n); err != nil {
			return n, err
		}
	}
	if opt.pgbouncer {
		if err := configurePgBouncer(dir, cred, &n); err != nil {
			return n, err
		}
	}
	if n.adminDSNFor == nil && n.dsnFor != nil && (opt.tls || opt.pgbouncer) {
		n.adminDSNFor = socketDSN
	}
	return n, nil
}

// configureTLS makes a throwaway CA and a server certificate for localhost
// and 127.0.0.1, turns TLS on, and lets TCP clients in only over TLS and
// with the postgres role's password (set once the server is up).
func configureTLS(dir string, cred *syscall.Credential, n *clusterNetwork) error {
	files, err := writeCertificates(dir, cred)
	if err != nil {
		return fmt.Errorf("queuetest: TLS certificates: %w", err)
	}
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	n.password = "pw" + hex.EncodeToString(b[:])
	n.rootCert = files.rootCert
	n.extra = fmt.Sprintf("-c ssl=on -c ssl_cert_file=%s -c ssl_key_file=%s -c password_encryption=scram-sha-256",
		files.serverCert, files.serverKey)
	hba := "local all all trust\n" +
		"hostssl all all 127.0.0.1/32 scram-sha-256\n" +
		"hostnossl all all 127.0.0.1/32 reject\n"
	if err := writeOwned(filepath.Join(dir, "data", "pg_hba.conf"), hba, cred, 0o600); err != nil {
		return err
	}
	n.dsnFor = func(db string) string {
		return fmt.Sprintf("host=localhost port=%d user=postgres password=%s dbname=%s sslmode=verify-full sslrootcert=%s",
			n.port, n.password, db, n.rootCert)
	}
	return nil
}

// configurePgBouncer writes a PgBouncer configuration in transaction mode
// in front of the cluster's socket and points the handed-out connection
// strings at it.
func configurePgBouncer(dir string, cred *syscall.Credential, n *clusterNetwork) error {
	bin, err := findPgBouncer()
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	n.pgbouncer, n.bouncerPort = bin, port
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%d user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = any
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 40
reserve_pool_size = 10
ignore_startup_parameters = extra_float_digits
server_check_delay = 1
server_login_retry = 1
pidfile = %s
`, dir, n.port, port, filepath.Join(dir, "pgbouncer.pid"))
	if err := writeOwned(filepath.Join(dir, "pgbouncer.ini"), ini, cred, 0o600); err != nil {
		return err
	}
	direct := n.dsnFor
	n.adminDSNFor = direct
	n.dsnFor = func(db string) string {
		return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s sslmode=disable", port, db)
	}
	return nil
}

// PgBouncerHint says how to install PgBouncer.
const PgBouncerHint = "pgbouncer not found on PATH or in /usr/sbin (Debian/Ubuntu: apt-get install pgbouncer; macOS: brew install pgbouncer)"

// findPgBouncer finds the pgbouncer binary: PGBOUNCER if set, then PATH,
// then /usr/sbin (where Debian puts it, off a normal user's PATH).
func findPgBouncer() (string, error) {
	if env := os.Getenv("PGBOUNCER"); env != "" && isExecutable(env) {
		return env, nil
	}
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer", "/usr/local/bin/pgbouncer"} {
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s", PgBouncerHint)
}

// writeOwned writes a file the cluster's user owns.
func writeOwned(path, text string, cred *syscall.Credential, mode os.FileMode) error {
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		return err
	}
	if cred != nil {
		return os.Chown(path, int(cred.Uid), int(cred.Gid))
	}
	return nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("queuetest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitPort waits until something accepts connections on 127.0.0.1:port
// (the PgBouncer); it reports PgBouncer's log if it does not.
func waitPort(ctx context.Context, port int, exited <-chan struct{}, dir string) error {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("queuetest: the cluster's supervisor exited: %s", bouncerLog(dir))
		case <-ctx.Done():
			return fmt.Errorf("queuetest: pgbouncer did not start: %w: %s", ctx.Err(), bouncerLog(dir))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func bouncerLog(dir string) string {
	log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
	return strings.TrimSpace(lastLines(log, 5))
}
