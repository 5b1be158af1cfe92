package queuetest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// supervisor runs postgres and reads commands from its standard input:
// "stop" stops postgres at once (-m immediate: as after a crash, without a
// checkpoint), "start" starts it again; each is answered with a line. When
// its standard input closes, which happens when the process that started it
// exits, however it exits, it stops postgres and removes the cluster's
// directory.
const supervisor = `
start_pg() {
	"$PGBIN/postgres" -D "$PGDIR/data" -k "$PGDIR" -p "$PGPORT" \
		-c listen_addresses="$PGLISTEN" -c fsync=$PGFSYNC -c synchronous_commit=$PGSYNC \
		-c full_page_writes=$PGFSYNC -c max_connections=300 -c shared_buffers=256MB \
		-c max_locks_per_transaction=256 $PGEXTRA >>"$PGDIR/postgres.log" 2>&1 &
	pg=$!
}
start_pg
bouncer=
if [ -n "$PGBOUNCER" ]; then
	# Restarted when it exits by itself, as a service manager would:
	# PgBouncer 1.18 can die on a cancel request racing a query's end
	# (pgbouncer/pgbouncer#822).
	(
		while [ ! -e "$PGDIR/pgbouncer.stop" ]; do
			rm -f "$PGDIR/pgbouncer.pid"
			"$PGBOUNCER" "$PGDIR/pgbouncer.ini" >>"$PGDIR/pgbouncer.log" 2>&1
			[ -e "$PGDIR/pgbouncer.stop" ] || echo "queuetest: pgbouncer exited; restarting" >>"$PGDIR/pgbouncer.log"
		done
	) &
	bouncer=$!
fi
while read -r cmd; do
	case "$cmd" in
	stop) kill -QUIT $pg 2>/dev/null; wait $pg; echo stopped ;;
	start) start_pg; echo started ;;
	esac
done
if [ -n "$bouncer" ]; then
	touch "$PGDIR/pgbouncer.stop"
	kill -INT "$(cat "$PGDIR/pgbouncer.pid" 2>/dev/null)" 2>/dev/null
	wait $bouncer
fi
kill -INT $pg 2>/dev/null
wait $pg
rm -rf "$PGDIR"
`

// localOptions shapes a cluster made from the local binaries.
type localOptions struct {
	// durable turns synchronous_commit on: commits survive a crash of the
	// server (not of the machine); fsync stays off unless fsync is set.
	durable bool
	// fsync turns fsync and full_page_writes on (with durable:
	// PostgreSQL's defaults): commits survive a crash of the machine too,
	// and cost what they cost in production.
	fsync bool
	// tcp makes the server listen on 127.0.0.1 at a free port besides its
	// unix socket (which then carries that port number too).
	tcp bool
	// tls turns TLS on with a throwaway CA and requires it, with a
	// password, on TCP connections; it implies tcp.
	tls bool
	// pgbouncer runs a PgBouncer in transaction mode in front of the
	// cluster: DSN then points at it, the harness's own connection does
	// not.
	pgbouncer bool
}

// startLocal makes a throwaway cluster with the local PostgreSQL binaries.
func startLocal(ctx context.Context, opt localOptions) (*Server, error) {
	bin, err := findPostgresBin()
	if err != nil {
		return nil, err
	}
	cred, err := clusterCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "esync-pg-")
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", filepath.Join(dir, "data"), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, lastLines(out, 5))
	}
	net, err := configureNetwork(dir, cred, opt)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}

	sup := exec.Command("/bin/sh", "-c", supervisor)
	sup.Env = append(os.Environ(), "PGBIN="+bin, "PGDIR="+dir, "PGSYNC="+onOff(opt.durable), "PGFSYNC="+onOff(opt.fsync),
		"PGPORT="+strconv.Itoa(net.port), "PGLISTEN="+net.listen, "PGEXTRA="+net.extra, "PGBOUNCER="+net.pgbouncer)
	sup.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	sup.Dir = dir
	stdin, err := sup.StdinPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	stdout, err := sup.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := sup.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	exited := make(chan struct{})
	answers := make(chan string)
	go func() {
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			answers <- lines.Text()
		}
		sup.Wait()
		close(exited)
	}()
	var controlMu sync.Mutex
	socket := filepath.Join(dir, ".s.PGSQL."+strconv.Itoa(net.port))

	s := &Server{
		Source:      "local",
		RootCert:    net.rootCert,
		dsnFor:      net.dsnFor,
		adminDSNFor: net.adminDSNFor,
		password:    net.password,
		control: func(ctx context.Context, cmd string) error {
			controlMu.Lock()
			defer controlMu.Unlock()
			if _, err := io.WriteString(stdin, cmd+"\n"); err != nil {
				return fmt.Errorf("queuetest: %s: %w", cmd, err)
			}
			select {
			case <-answers:
			case <-exited:
				return fmt.Errorf("queuetest: %s: the cluster's supervisor has exited", cmd)
			case <-ctx.Done():
				return fmt.Errorf("queuetest: %s: %w", cmd, ctx.Err())
			}
			if cmd == "start" {
				return waitSocket(ctx, socket, exited, dir)
			}
			return nil
		},
		stop: func() error {
			stdin.Close()
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				return errors.New("queuetest: local postgres did not stop within 30s")
			}
			return nil
		},
	}
	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := waitSocket(startCtx, socket, exited, dir); err != nil {
		s.stop()
		return nil, err
	}
	if net.pgbouncer != "" {
		if err := waitPort(startCtx, net.bouncerPort, exited, dir); err != nil {
			s.stop()
			return nil, err
		}
	}
	return s, nil
}

// onOff is a boolean setting's value for postgres -c.
func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// waitSocket waits for the server's socket; it reports the server log if
// postgres gave up.
func waitSocket(ctx context.Context, socket string, exited <-chan struct{}, dir string) error {
	for {
		if _, err := os.Stat(socket); err == nil {
			return nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			return fmt.Errorf("postgres exited: %s", lastLines(log, 5))
		case <-ctx.Done():
			log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			return fmt.Errorf("postgres did not start: %w: %s", ctx.Err(), lastLines(log, 5))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// findPostgresBin finds the folder holding initdb and postgres: PGBIN if
// set, then PATH (following links), then the newest
// /usr/lib/postgresql/<version>/bin.
func findPostgresBin() (string, error) {
	var candidates []string
	if env := os.Getenv("PGBIN"); env != "" {
		candidates = append(candidates, env)
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			candidates = append(candidates, filepath.Dir(real))
		}
		candidates = append(candidates, filepath.Dir(p))
	}
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(versions, func(i, j int) bool { return versionOf(versions[i]) > versionOf(versions[j]) })
	candidates = append(candidates, versions...)
	for _, dir := range candidates {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", errors.New("initdb and postgres not found on PATH or in /usr/lib/postgresql/*/bin")
}

func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// clusterCredential returns the postgres user's identity when running as
// root (initdb and postgres refuse root), and nil otherwise.
func clusterCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, errors.New("running as root and there is no postgres user to run the cluster as")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte(" | ")))
}
