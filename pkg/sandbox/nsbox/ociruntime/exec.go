package ociruntime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// DefaultMaxOutput caps each output stream of an Exec when
// ExecOptions.MaxOutput is not set.
const DefaultMaxOutput = 16 << 20

// execWaitDelay bounds how long Exec waits for the output pipes to close
// once the runtime has exited (a background child may hold them).
const execWaitDelay = 2 * time.Second

// execKillGrace is how long a timed-out Exec waits for the runtime to exit
// after killing the process, before it kills the runtime too.
const execKillGrace = 5 * time.Second

// ExecOptions describe a process to run in a running container.
type ExecOptions struct {
	Process        *specs.Process // Terminal must be false
	Stdin          io.Reader
	Stdout, Stderr io.Writer     // nil discards
	Timeout        time.Duration // 0: until ctx ends
	MaxOutput      int64         // per stream; beyond it output is dropped; 0: DefaultMaxOutput
}

// Exec runs o.Process in the container (`runtime exec --process FILE`) and
// returns its exit code. When o.Timeout passes or ctx ends the process is
// killed and the error wraps context.DeadlineExceeded (or ctx's error).
// A failure of the runtime itself (the process never started) is an error.
func (r *Runtime) Exec(ctx context.Context, id string, o ExecOptions) (int, error) {
	if err := checkID(id); err != nil {
		return -1, err
	}
	if o.Process == nil || len(o.Process.Args) == 0 {
		return -1, fmt.Errorf("exec in %s: no process args: %w", id, errdefs.ErrInvalidArgument)
	}
	if o.Process.Terminal {
		return -1, fmt.Errorf("exec in %s with a terminal: %w", id, errdefs.ErrNotImplemented)
	}
	if !r.known(id) {
		return -1, fmt.Errorf("exec in %s: %w", id, errdefs.ErrNotFound)
	}
	procFile, pidFile, err := r.writeProcess(id, o.Process)
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, err)
	}
	defer os.Remove(procFile)
	defer os.Remove(pidFile)
	limit := o.MaxOutput
	if limit <= 0 {
		limit = DefaultMaxOutput
	}
	errTail := &tailBuffer{max: 4096}
	cmd := r.command(context.Background(), "exec", "--process", procFile, "--pid-file", pidFile, id)
	cmd.Stdin = o.Stdin
	cmd.Stdout = &capWriter{w: o.Stdout, left: limit}
	cmd.Stderr = io.MultiWriter(&capWriter{w: o.Stderr, left: limit}, errTail)
	cmd.WaitDelay = execWaitDelay
	if err := r.startCmd(cmd); err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	err, cause := r.waitExec(ctx, o.Timeout, cmd, pidFile, done)
	if cause != nil {
		return -1, fmt.Errorf("exec %v in %s: %w", o.Process.Args, id, cause)
	}
	if _, perr := os.Stat(pidFile); perr != nil {
		return -1, fmt.Errorf("exec in %s: %s: %v: %s: %w", id, r.name, err, errTail.String(), errdefs.ErrFailedPrecondition)
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exitErr):
		return exitErr.ExitCode(), nil
	}
	return -1, fmt.Errorf("exec in %s: %w", id, err)
}

// waitExec waits for the exec to end, or kills it when the timeout passes
// or ctx ends; cause is then why.
func (r *Runtime) waitExec(ctx context.Context, timeout time.Duration, cmd *exec.Cmd, pidFile string, done <-chan error) (err, cause error) {
	var expire <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expire = t.C
	}
	select {
	case err := <-done:
		return err, nil
	case <-expire:
		cause = fmt.Errorf("timed out after %v: %w", timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		cause = ctx.Err()
	}
	return killExec(cmd, pidFile, done), cause
}

// killExec kills the exec'd process and waits for the runtime to reap it
// and exit. Only if it does not (the process had not started, or the
// runtime hangs) is the runtime itself killed: killing it first would leave
// the process's zombie to the host's init, and the container's cgroup busy
// until that reaps it.
func killExec(cmd *exec.Cmd, pidFile string, done <-chan error) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	giveUp := time.After(execKillGrace)
	killed := false
	for {
		if pid, err := readPid(pidFile); err == nil && !killed {
			_ = unix.Kill(pid, unix.SIGKILL)
			killed = true
		}
		select {
		case err := <-done:
			return err
		case <-giveUp:
			_ = cmd.Process.Kill()
			return <-done
		case <-tick.C:
		}
	}
}

// writeProcess writes the process spec and names the pidfile of one exec.
func (r *Runtime) writeProcess(id string, p *specs.Process) (procFile, pidFile string, err error) {
	proc := *p
	if proc.Cwd == "" {
		proc.Cwd = "/"
	}
	b, err := json.Marshal(&proc)
	if err != nil {
		return "", "", err
	}
	f, err := os.CreateTemp(r.dir(id), "exec-*.json")
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		_ = os.Remove(f.Name())
		return "", "", err
	}
	base := strings.TrimSuffix(filepath.Base(f.Name()), ".json")
	return f.Name(), filepath.Join(r.dir(id), base+".pid"), nil
}

// capWriter passes on at most left bytes and drops the rest, always
// reporting success so the process's output is drained.
type capWriter struct {
	w    io.Writer
	left int64
}

func (c *capWriter) Write(p []byte) (int, error) {
	if c.w == nil || c.left <= 0 {
		return len(p), nil
	}
	n := min(int64(len(p)), c.left)
	if _, err := c.w.Write(p[:n]); err != nil {
		c.left = 0 // the reader is gone: drop the rest
		return len(p), nil
	}
	c.left -= n
	return len(p), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strconv.Quote(strings.TrimSpace(string(t.b)))
}
