package main

import (
	"bufio"
	"context"
	"database/sql"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/esync/queue"
	"github.com/esync/queue/queuetest"
)

func TestMain(m *testing.M) {
	if os.Getenv("ESYNC_RUN_ORIGINAL_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestOriginalExampleRuns starts the original README's program in a child
// process against a fresh database and waits until its task ran and its
// scheduled action fired, then checks the task is DONE in the queue.
func TestOriginalExampleRuns(t *testing.T) {
	dsn := queuetest.NewDSN(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ESYNC_RUN_ORIGINAL_MAIN=1", "DB_TABLE=")
	for k, v := range dbEnv(t, dsn) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()

	seen := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			seen <- sc.Text()
		}
		close(seen)
	}()
	var ranTask, ranSchedule bool
	deadline := time.After(60 * time.Second)
	for !ranTask || !ranSchedule {
		select {
		case line, ok := <-seen:
			if !ok {
				t.Fatal("the program exited before its task and scheduled action ran")
			}
			t.Log(line)
			ranTask = ranTask || strings.Contains(line, "myQueueAction done.  Task key: myKey")
			ranSchedule = ranSchedule || strings.Contains(line, "myScheduledAction done")
			if strings.Contains(line, "Error from sync manager") {
				t.Errorf("error reported: %s", line)
			}
		case <-deadline:
			t.Fatalf("after 60s: task ran %v, scheduled action ran %v", ranTask, ranSchedule)
		}
	}

	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	d, err := queue.NewPostgresDriverFromDB(db)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The DONE is written just after the action logs; give it a moment.
	for i := 0; ; i++ {
		n, err := d.CountTasks(ctx, queue.TaskFilter{Name: "exampleTask", Key: "myKey", States: []queue.TaskState{queue.TaskDone}})
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if i == 100 {
			t.Fatal("exampleTask/myKey is not DONE")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dbEnv splits a connection string into the DB_* variables the original
// program reads.
func dbEnv(t *testing.T, dsn string) map[string]string {
	env := map[string]string{}
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		pass, _ := u.User.Password()
		env["DB_USER"], env["DB_PASS"], env["DB_HOST"] = u.User.Username(), pass, u.Host
		env["DB_DB"] = strings.TrimPrefix(u.Path, "/")
		return env
	}
	names := map[string]string{"host": "DB_HOST", "user": "DB_USER", "password": "DB_PASS", "dbname": "DB_DB"}
	port := ""
	for _, kv := range strings.Fields(dsn) {
		k, v, _ := strings.Cut(kv, "=")
		if k == "port" {
			port = v
		}
		if name, ok := names[k]; ok {
			env[name] = v
		}
	}
	if port != "" && !strings.HasPrefix(env["DB_HOST"], "/") {
		env["DB_HOST"] += ":" + port
	}
	if env["DB_HOST"] == "" || env["DB_DB"] == "" {
		t.Fatalf("cannot split the test database's connection string into DB_* variables")
	}
	return env
}
