package queuetest

import (
	"context"
	"fmt"
	"time"

	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"
)

// startDocker runs PostgreSQL in a container if a Docker engine answers
// within a few seconds: with fsync, synchronous_commit and full_page_writes
// off, or, when durable, on (the image's defaults). The container removes
// itself after an hour at most.
func startDocker(ctx context.Context, durable bool) (*Server, error) {
	pool, err := dockertest.NewPool("")
	if err != nil {
		return nil, err
	}
	pingCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := pool.Client.PingWithContext(pingCtx); err != nil {
		return nil, fmt.Errorf("no engine answers: %w", err)
	}
	pool.MaxWait = 90 * time.Second
	cmd := []string{"postgres", "-c", "max_connections=300"}
	if !durable {
		cmd = append(cmd, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	res, err := pool.RunWithOptions(&dockertest.RunOptions{
		Repository: "postgres",
		Tag:        "15-alpine",
		Env:        []string{"POSTGRES_PASSWORD=esync", "POSTGRES_USER=postgres"},
		Cmd:        cmd,
	}, func(hc *docker.HostConfig) {
		hc.AutoRemove = true
		hc.RestartPolicy = docker.RestartPolicy{Name: "no"}
	})
	if err != nil {
		return nil, fmt.Errorf("start container: %w", err)
	}
	res.Expire(3600)
	hostPort := res.GetHostPort("5432/tcp")
	return &Server{
		Source: "docker",
		dsnFor: func(db string) string {
			return fmt.Sprintf("postgres://postgres:esync@%s/%s?sslmode=disable", hostPort, db)
		},
		stop: func() error { return pool.Purge(res) },
	}, nil
}
