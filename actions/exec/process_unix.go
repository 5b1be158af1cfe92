//go:build unix

package execaction

import (
	"context"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// pipeGrace is how long a run waits, after the process group is gone, for
// the program's output pipes to close. Only a process that left the group
// (setsid, a daemon) can hold them longer; then they are closed anyway.
const pipeGrace = 2 * time.Second

// processGroups reports whether this system can run programs in their own
// process group; New refuses where it cannot.
const processGroups = true

// run starts the program as the leader of a new process group, feeds it
// stdin, keeps the tails of its output, and waits for it to exit or for ctx
// to end. When ctx ends first the whole group is killed (SIGTERM and, after
// the grace period, SIGKILL). Whatever is left of the group when the program
// has exited is killed too, so nothing it started outlives the run.
func run(ctx context.Context, s spec) outcome {
	o := outcome{stdout: newTail(s.limit), stderr: newTail(s.limit)}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		o.startErr = err
		return o
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		o.startErr = err
		return o
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		outR.Close()
		outW.Close()
		o.startErr = err
		return o
	}

	cmd := exec.Command(s.program, s.args...)
	cmd.Env = s.env
	cmd.Dir = s.dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	// The child has its copies; the parent keeps only its own ends.
	stdinR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		stdinW.Close()
		outR.Close()
		errR.Close()
		o.startErr = err
		return o
	}
	pgid := cmd.Process.Pid

	var pipes sync.WaitGroup
	pipes.Go(func() {
		// A program that does not read its input ends this with EPIPE.
		stdinW.Write(s.stdin)
		stdinW.Close()
	})
	pipes.Go(func() { io.Copy(o.stdout, outR) })
	pipes.Go(func() { io.Copy(o.stderr, errR) })

	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	select {
	case <-exited:
	case <-ctx.Done():
		o.stopped = ctx.Err()
		stopGroup(pgid, s.grace, exited)
		<-exited
	}
	// POSIX keeps the group's id from being reused while any member lives,
	// so this reaches only what the program left behind.
	syscall.Kill(-pgid, syscall.SIGKILL)

	drained := make(chan struct{})
	go func() {
		pipes.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(pipeGrace):
		stdinW.Close()
		outR.Close()
		errR.Close()
		<-drained
	}
	outR.Close()
	errR.Close()
	o.state = cmd.ProcessState
	return o
}

// stopGroup ends the process group pgid: SIGTERM first when grace is
// positive, then SIGKILL once grace has passed without the leader exiting.
func stopGroup(pgid int, grace time.Duration, exited <-chan struct{}) {
	if grace > 0 {
		syscall.Kill(-pgid, syscall.SIGTERM)
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-exited:
			return
		case <-timer.C:
		}
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
}
