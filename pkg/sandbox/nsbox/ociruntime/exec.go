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

// execWaitDelay is how long Exec waits for the outputs to end once the
// runtime has exited (a background child may hold them open) before it
// cuts an output that has nothing left to read (see awaitOutput).
const execWaitDelay = 2 * time.Second

// execDrainLimit is how much longer an output that still has bytes to read
// is waited for.
const execDrainLimit = 30 * time.Second

// outputPoll is how often a late output is checked for unread bytes.
const outputPoll = 50 * time.Millisecond

// execKillGrace is how long a timed-out Exec waits for the runtime to exit
// after killing the process, before it kills the runtime too.
const execKillGrace = 5 * time.Second

// firstSizeWait is how long a terminal Exec waits for the caller's first
// window size before it starts the runtime: the size is in the process
// spec, so the process never sees a terminal of size 0x0.
const firstSizeWait = time.Second

// ExecOptions describe a process to run in a running container.
type ExecOptions struct {
	// Process is the process to run. With Process.Terminal it gets a
	// pseudo-terminal: Stdout then carries all its output, Stderr is
	// unused.
	Process        *specs.Process
	Stdin          io.Reader      // nil: none (the process reads /dev/null)
	Stdout, Stderr io.Writer      // nil discards; a writer that fails is drained from then on
	Resize         <-chan WinSize // terminal size changes; nil: none
	Timeout        time.Duration  // 0: until ctx ends
}

// Exec runs o.Process in the container (`runtime exec --process FILE`) and
// returns its exit code. When o.Timeout passes or ctx ends the process is
// killed and the error wraps context.DeadlineExceeded (or ctx's error).
// A failure of the runtime itself (the process never started) is an error.
//
// With a terminal the runtime runs in the foreground with a pty of the
// daemon's as its controlling terminal (CRI-O's way): it relays between
// that and the process's own terminal, and passes window sizes on when the
// kernel signals it SIGWINCH.
func (r *Runtime) Exec(ctx context.Context, id string, o ExecOptions) (int, error) {
	if err := checkID(id); err != nil {
		return -1, err
	}
	if o.Process == nil || len(o.Process.Args) == 0 {
		return -1, fmt.Errorf("exec in %s: no process args: %w", id, errdefs.ErrInvalidArgument)
	}
	if !r.known(id) {
		return -1, fmt.Errorf("exec in %s: %w", id, errdefs.ErrNotFound)
	}
	var first *WinSize
	if o.Process.Terminal {
		// The runtime sizes the process's terminal before it starts it.
		first = firstWinSize(o.Resize)
		if first != nil {
			p := *o.Process
			p.ConsoleSize = &specs.Box{Height: uint(first.Height), Width: uint(first.Width)}
			o.Process = &p
		}
	}
	procFile, pidFile, err := r.writeProcess(id, o.Process)
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, err)
	}
	defer os.Remove(procFile)
	defer os.Remove(pidFile)
	errTail := &tailBuffer{max: 4096}
	cmd := r.command(context.Background(), "exec", "--process", procFile, "--pid-file", pidFile, id)
	var stdio execIO
	if o.Process.Terminal {
		stdio, err = newTerminalIO(cmd, o, pidFile, first)
	} else {
		stdio, err = newPipeIO(cmd, o, errTail)
	}
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, err)
	}
	if err := r.startCmd(cmd); err != nil {
		stdio.close()
		return -1, fmt.Errorf("exec in %s: %w", id, err)
	}
	stdio.started()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	err, cause := r.waitExec(ctx, o.Timeout, cmd, pidFile, done)
	stdio.close()
	if cause != nil {
		return -1, fmt.Errorf("exec %v in %s: %w", o.Process.Args, id, cause)
	}
	return execResult(id, r.name, pidFile, err, errTail)
}

// execResult turns the runtime's end into the process's exit code.
func execResult(id, runtime, pidFile string, err error, errTail *tailBuffer) (int, error) {
	if _, perr := os.Stat(pidFile); perr != nil {
		return -1, fmt.Errorf("exec in %s: %s: %v: %s: %w", id, runtime, err, errTail.String(), errdefs.ErrFailedPrecondition)
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

// drainWriter passes writes on until the first failure (the reader is
// gone), then drops them, always reporting success so that the process's
// output is drained and it never blocks on a full pipe.
type drainWriter struct {
	w      io.Writer
	failed bool
}

func (d *drainWriter) Write(p []byte) (int, error) {
	if d.w == nil || d.failed {
		return len(p), nil
	}
	if _, err := d.w.Write(p); err != nil {
		d.failed = true
	}
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
