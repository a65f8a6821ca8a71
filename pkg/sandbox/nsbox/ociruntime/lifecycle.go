package ociruntime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/cradle-runtime/cradle/pkg/execfifo"
)

// Container states, as the OCI runtime spec names them.
const (
	StateCreated = "created"
	StateRunning = "running"
	StateStopped = "stopped"
	StatePaused  = "paused"
)

// conmonExitTimeout bounds how long Delete waits for conmon to exit on its
// own (it does once the container has exited) before it kills it.
const conmonExitTimeout = 5 * time.Second

// killForDeleteWait bounds how long a forced Delete waits for the exit
// code of the container it has killed.
const killForDeleteWait = 2 * time.Second

// killWaitSlice is how often a forced Delete checks on conmon while it
// waits for the exit.
const killWaitSlice = 100 * time.Millisecond

// Status is what the runtime and conmon's exit file say about a container.
type Status struct {
	State      string // created, running, paused or stopped
	Pid        int    // the init's host pid while it runs
	ExitCode   int32  // when Exited: 128+signal for a signalled process
	FinishedAt time.Time
	Exited     bool // conmon has recorded the exit code
	OOMKilled  bool // the kernel's OOM killer ended it (conmon's oom marker)
}

// Start starts a created container: one without poststart hooks through
// its exec FIFO (pkg/execfifo), any other by `runtime start`.
func (r *Runtime) Start(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if !r.known(id) {
		return fmt.Errorf("start %s: %w", id, errdefs.ErrNotFound)
	}
	if m, err := r.readMeta(id); err == nil && m.FifoStart {
		err := r.startByFifo(ctx, id)
		if !errors.Is(err, execfifo.ErrNoFifo) {
			return err
		}
	}
	if _, err := r.run(ctx, "start", id); err != nil {
		return r.classify(ctx, id, fmt.Errorf("start %s: %w", id, err))
	}
	return nil
}

// Kill sends sig to the container's init, or to all its processes.
// Killing a stopped container is ErrFailedPrecondition; an unknown one is
// ErrNotFound.
func (r *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	if err := checkID(id); err != nil {
		return err
	}
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	args = append(args, id, strconv.Itoa(int(sig)))
	if _, err := r.run(ctx, args...); err != nil {
		return r.classify(ctx, id, fmt.Errorf("kill %s with %v: %w", id, sig, err))
	}
	return nil
}

// classify adds an errdefs class to a runtime failure from the container's
// state: gone is ErrNotFound, stopped is ErrFailedPrecondition, anything
// else is ErrInternal.
func (r *Runtime) classify(ctx context.Context, id string, err error) error {
	if ctx.Err() != nil {
		return err
	}
	if !r.known(id) {
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	}
	if st, serr := r.runtimeState(ctx, id); serr == nil && st.State == StateStopped {
		return fmt.Errorf("%w: container stopped: %w", err, errdefs.ErrFailedPrecondition)
	}
	return fmt.Errorf("%w: %w", err, errdefs.ErrInternal)
}

// Delete removes the container from the runtime, waits for its conmon to
// exit and removes its state files. Without force a running container is
// ErrFailedPrecondition. Deleting an unknown container is not an error.
func (r *Runtime) Delete(ctx context.Context, id string, force bool) error {
	if err := checkID(id); err != nil {
		return err
	}
	if err := r.settleCreate(ctx, id); err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	if r.known(id) {
		args := []string{"delete", id}
		if force {
			if !r.crun {
				r.killForDelete(ctx, id)
			}
			args = []string{"delete", "--force", id}
		}
		if _, err := r.run(ctx, args...); err != nil && r.known(id) {
			if st, serr := r.runtimeState(ctx, id); serr == nil && st.State != StateStopped {
				return fmt.Errorf("delete %s (%s): %v: %w", id, st.State, err, errdefs.ErrFailedPrecondition)
			}
			return fmt.Errorf("delete %s: %w", id, err)
		}
	}
	return r.removeState(ctx, id)
}

// killForDelete kills a created or running container and waits (briefly)
// for conmon to record its exit, before runc's forced delete: that would
// kill it too, but then polls for the exit in 100 ms steps (crun's does
// not, so crun is spared the extra calls). A container whose exit conmon
// has recorded (the usual case: kubelet stops a container before it
// removes it) has no init left to kill, and `runtime state` would only say
// "stopped": it is not asked. Processes the init leaves behind in a shared
// PID namespace are killed by the forced delete either way.
func (r *Runtime) killForDelete(ctx context.Context, id string) {
	var exit Status
	if exited, err := r.readExit(id, &exit); err == nil && exited {
		return
	}
	st, err := r.runtimeState(ctx, id)
	if err != nil || (st.State != StateRunning && st.State != StateCreated) {
		return
	}
	if err := r.Kill(ctx, id, syscall.SIGKILL, true); err != nil {
		return
	}
	// In slices, so that a conmon that is gone (it exits when it cannot
	// report a create to a daemon that died meanwhile) is not waited for:
	// no exit is coming.
	deadline := time.Now().Add(killForDeleteWait)
	for {
		wctx, cancel := context.WithTimeout(ctx, killWaitSlice)
		_, err := r.Wait(wctx, id)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return
		}
		if !r.conmonAlive(id) || time.Now().After(deadline) {
			r.log.DebugContext(ctx, "no exit code before a forced delete", "id", id, "err", err)
			return
		}
	}
}

// removeState force-deletes what the runtime still knows, waits for conmon
// and removes the container's files. It is the undo of Create too.
func (r *Runtime) removeState(ctx context.Context, id string) error {
	if err := r.settleCreate(ctx, id); err != nil {
		return err
	}
	if r.known(id) {
		if _, err := r.run(ctx, "delete", "--force", id); err != nil && r.known(id) {
			return fmt.Errorf("delete %s: %w", id, err)
		}
	}
	if err := r.stopConmon(ctx, id); err != nil {
		return err
	}
	if m, err := r.readMeta(id); err == nil {
		for _, f := range []string{"ctl", "winsz", "attach"} {
			_ = os.Remove(filepath.Join(m.Bundle, f))
		}
	}
	_ = os.Remove(r.attachLink(id))
	if err := os.RemoveAll(r.dir(id)); err != nil {
		return fmt.Errorf("remove the state of %s: %w", id, err)
	}
	return nil
}

// conmonAlive reports whether the conmon its pid file names runs.
func (r *Runtime) conmonAlive(id string) bool {
	pid, err := readPid(r.conmonPid(id))
	if err != nil {
		return false
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != commOf(r.conmon) {
		return false
	}
	// A zombie (its parent, the host's init, has not reaped it yet) runs
	// no more: "pid (comm) Z ...".
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat[bytes.LastIndexByte(stat, ')')+1:]), " ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

// settlePoll is how often settleCreate looks again.
const settlePoll = 20 * time.Millisecond

// settleCreate waits until no create of id is under way. conmon is a daemon
// of its own: a daemon that died while conmon had the runtime create the
// container left it going, and the next one may release the container
// (its record says it was being created) before the runtime knows it or
// has finished with it; deleting it then would leave whatever the create
// goes on to make (a created container, its init and cgroup) with nobody
// tracking it. A create is under way while a conmon of id runs and the
// runtime has not written the pid file (its last step; conmon exits when
// the create fails). It waits at most createTimeout, as Create does.
func (r *Runtime) settleCreate(ctx context.Context, id string) error {
	if _, err := os.Stat(r.dir(id)); err != nil {
		return nil // Create never began (it makes the directory first)
	}
	deadline := time.Now().Add(createTimeout)
	for {
		if _, err := os.Stat(r.pidFile(id)); err == nil {
			return nil
		}
		if !r.conmonRuns(id) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("conmon of %s still creates it after %s: %w", id, createTimeout, errdefs.ErrUnavailable)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the create of %s under way: %w", id, ctx.Err())
		case <-time.After(settlePoll):
		}
	}
}

// conmonRuns reports whether a conmon of container id runs: a process of
// conmon's name whose arguments name id's pid file (conmon's own pid file
// may not be written yet).
func (r *Runtime) conmonRuns(id string) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	want := "\x00" + r.pidFile(id) + "\x00"
	comm := commOf(r.conmon)
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		c, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(c)) != comm {
			continue
		}
		// A zombie's cmdline is empty: it runs no more.
		if cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && strings.Contains(string(cmd), want) {
			return true
		}
	}
	return false
}

// commOf is the name the kernel gives a process running the binary at path
// (/proc/<pid>/comm): its base name, cut to 15 bytes.
func commOf(path string) string {
	base := filepath.Base(path)
	return base[:min(len(base), 15)]
}

// stopConmon waits for the container's conmon to exit, and kills it if it
// has not within conmonExitTimeout.
func (r *Runtime) stopConmon(ctx context.Context, id string) error {
	pid, err := readPid(r.conmonPid(id))
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != commOf(r.conmon) {
		return nil // gone (or the pid is someone else's now)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("pidfd of conmon %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if waitFd(ctx, fd, conmonExitTimeout) {
		return nil
	}
	r.log.WarnContext(ctx, "conmon did not exit, killing it", "id", id, "pid", pid)
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill conmon %d: %w", pid, err)
	}
	if !waitFd(ctx, fd, conmonExitTimeout) {
		return fmt.Errorf("conmon %d of %s does not exit: %w", pid, id, errdefs.ErrUnavailable)
	}
	return nil
}

// waitFd polls a pidfd until its process exits, timeout passes or ctx ends.
func waitFd(ctx context.Context, fd int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		if n > 0 {
			return true
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false
		}
	}
	return false
}

// runtimeStateJSON is the part of `runtime state` this package reads.
type runtimeStateJSON struct {
	Status string `json:"status"`
	Pid    int    `json:"pid"`
}

// runtimeState asks the runtime.
func (r *Runtime) runtimeState(ctx context.Context, id string) (Status, error) {
	out, err := r.run(ctx, "state", id)
	if err != nil {
		return Status{}, err
	}
	var s runtimeStateJSON
	if err := json.Unmarshal(out, &s); err != nil {
		return Status{}, fmt.Errorf("decode %s state of %s: %v: %w", r.name, id, err, errdefs.ErrInternal)
	}
	return Status{State: s.Status, Pid: s.Pid}, nil
}

// Status combines the runtime's state with conmon's exit file. It needs no
// memory of Create: a new Runtime value sees containers an earlier process
// made.
func (r *Runtime) Status(ctx context.Context, id string) (Status, error) {
	if err := checkID(id); err != nil {
		return Status{}, err
	}
	var st Status
	if r.known(id) {
		s, err := r.runtimeState(ctx, id)
		if err != nil && r.known(id) {
			return Status{}, fmt.Errorf("status of %s: %w", id, err)
		}
		st = s
		if st.State == StateCreated && st.Pid > 0 {
			if err := r.finishInterruptedStart(ctx, id, &st); err != nil {
				return Status{}, fmt.Errorf("status of %s: %w", id, err)
			}
		}
	}
	exited, err := r.readExit(id, &st)
	if err != nil {
		return Status{}, err
	}
	if st.State == "" && !exited {
		if _, err := os.Stat(r.dir(id)); err != nil {
			return Status{}, fmt.Errorf("status of %s: %w", id, errdefs.ErrNotFound)
		}
		st.State = StateStopped // the runtime forgot it, conmon left no code
	}
	return st, nil
}

// readExit fills st from conmon's exit file, if there is one.
func (r *Runtime) readExit(id string, st *Status) (bool, error) {
	f := r.exitFile(id)
	b, err := os.ReadFile(f)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return false, nil // being written
	}
	code, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return false, fmt.Errorf("exit file %s holds %q: %w", f, b, errdefs.ErrDataLoss)
	}
	fi, err := os.Stat(f)
	if err != nil {
		return false, err
	}
	st.State, st.Pid = StateStopped, 0
	st.Exited, st.ExitCode, st.FinishedAt = true, int32(code), fi.ModTime()
	if _, err := os.Stat(filepath.Join(r.dir(id), "oom")); err == nil {
		st.OOMKilled = true
	}
	return true, nil
}
