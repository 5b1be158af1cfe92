package queuetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// supervisor runs postgres and waits for its standard input to close, which
// happens when the process that started it exits, however it exits. Then it
// stops postgres and removes the cluster's directory.
const supervisor = `
"$PGBIN/postgres" -D "$PGDIR/data" -k "$PGDIR" -p 5432 \
	-c listen_addresses= -c fsync=off -c synchronous_commit=off \
	-c full_page_writes=off -c max_connections=300 -c shared_buffers=256MB \
	-c max_locks_per_transaction=256 >"$PGDIR/postgres.log" 2>&1 &
pg=$!
cat >/dev/null
kill -INT $pg 2>/dev/null
wait $pg
rm -rf "$PGDIR"
`

// startLocal makes a throwaway cluster with the local PostgreSQL binaries.
func startLocal(ctx context.Context) (*Server, error) {
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

	sup := exec.Command("/bin/sh", "-c", supervisor)
	sup.Env = append(os.Environ(), "PGBIN="+bin, "PGDIR="+dir)
	sup.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	sup.Dir = dir
	stdin, err := sup.StdinPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := sup.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	exited := make(chan struct{})
	go func() { sup.Wait(); close(exited) }()

	s := &Server{
		Source: "local",
		dsnFor: func(db string) string {
			return fmt.Sprintf("host=%s port=5432 user=postgres dbname=%s sslmode=disable", dir, db)
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
	// Wait for the socket; report the server log if postgres gave up.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, ".s.PGSQL.5432")); err == nil {
			return s, nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			return nil, fmt.Errorf("postgres exited: %s", lastLines(log, 5))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			s.stop()
			return nil, fmt.Errorf("postgres did not start within 60s: %s", lastLines(log, 5))
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
