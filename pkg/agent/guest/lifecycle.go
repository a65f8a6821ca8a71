package guest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
	"github.com/cradle-runtime/cradle/pkg/execfifo"
)

// outputDrain bounds the wait for a container's output to end after its
// init exited: a process outside its PID namespace (or one that escaped it)
// may hold the pipes open.
const outputDrain = 2 * time.Second

// removeWait bounds how long RemoveContainer waits for a killed container
// to exit before it deletes it anyway.
const removeWait = 10 * time.Second

// Start starts a created container.
func (r *Runtime) Start(ctx context.Context, id string) error {
	c, err := r.get(id)
	if err != nil {
		return err
	}
	if st, _ := c.current(); st != stateCreated {
		return checkTransition(id, st, stateRunning)
	}
	if err := r.release(ctx, c); err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	if err := c.markStarted(); err != nil {
		return err
	}
	r.log.Info("container started", "container", id)
	return nil
}

// release lets the created container's init exec its process: through
// crun's exec FIFO, as `crun start` does but without a crun process (a few
// hundred milliseconds under TCG), unless the spec has poststart hooks,
// which `crun start` runs.
func (r *Runtime) release(ctx context.Context, c *container) error {
	if !execfifo.HasPoststartHooks(c.bundle) {
		out, err := execfifo.ByWrite(execfifo.Path(r.crun.root, c.id), c.pid, nil)
		if err == nil {
			if out == execfifo.AlreadyReleased {
				r.log.Warn("container was released by an earlier start; removed its exec fifo", "container", c.id)
			}
			return nil
		}
		if !errors.Is(err, execfifo.ErrNoFifo) {
			return err
		}
	}
	_, err := r.crun.run(ctx, "start", c.id)
	return err
}

// maxSignal is Linux's highest signal number (SIGRTMAX).
const maxSignal = 64

// Signal sends sig to the container's init, or to all its processes. A
// container that has exited has nothing to signal: that is not an error.
func (r *Runtime) Signal(ctx context.Context, id string, sig unix.Signal, all bool) error {
	c, err := r.get(id)
	if err != nil {
		return err
	}
	if sig <= 0 || sig > maxSignal {
		return fmt.Errorf("signal %d: %w", sig, errdefs.ErrInvalidArgument)
	}
	if c.exited() {
		return nil
	}
	args := []string{id, strconv.Itoa(int(sig))}
	if all {
		args = append([]string{"--all"}, args...)
	}
	if _, err := r.crun.run(ctx, "kill", args...); err != nil {
		if c.reaped() {
			return nil
		}
		return fmt.Errorf("signal container %s: %w", id, err)
	}
	return nil
}

// Wait blocks until the container has exited and its output is written.
func (r *Runtime) Wait(ctx context.Context, id string) (*api.ContainerExit, error) {
	c, err := r.get(id)
	if err != nil {
		return nil, err
	}
	select {
	case <-c.done:
		_, exit := c.current()
		return exit, nil
	case <-c.removed:
		return nil, fmt.Errorf("container %s was removed: %w", id, errdefs.ErrNotFound)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// State reports the container without blocking.
func (r *Runtime) State(id string) (*api.ContainerStateResponse, error) {
	c, err := r.get(id)
	if err != nil {
		return nil, err
	}
	st, exit := c.current()
	return &api.ContainerStateResponse{Pid: int32(c.pid), Exited: st == stateExited, Exit: exit}, nil
}

// watchExit records the init's exit once its output has ended (or, after
// outputDrain, been cut) and its log is closed.
func (r *Runtime) watchExit(c *container, exit <-chan Exit) {
	e := <-exit
	close(c.reapedCh)
	// Read before crun delete removes the cgroup.
	oom := e.Killed(unix.SIGKILL) && oomKills(c.cgroup) > 0
	select {
	case <-c.out.done:
	case <-time.After(outputDrain):
		r.log.Warn("container output still open after its init exited: cut", "container", c.id)
		c.out.abort()
		<-c.out.done
	}
	c.log.close()
	c.closeStdin()
	c.mu.Lock()
	c.state = stateExited
	c.exit = &api.ContainerExit{ExitCode: e.Code(), FinishedAtUnixNs: e.At.UnixNano(), OomKilled: oom}
	c.mu.Unlock()
	close(c.done)
	r.log.Info("container exited", "container", c.id, "code", e.Code(), "oom", oom)
}

// oomKills reads how many processes the OOM killer killed in the cgroup at
// p: memory.events on cgroup v2 (the guest), memory.oom_control on v1.
func oomKills(p string) uint64 {
	if p == "" {
		return 0
	}
	for _, f := range []string{
		filepath.Join("/sys/fs/cgroup", p, "memory.events"),
		filepath.Join("/sys/fs/cgroup/memory", p, "memory.oom_control"),
	} {
		if n, ok := readKey(f, "oom_kill"); ok {
			return n
		}
	}
	return 0
}

// readKey reads the value of key in a flat-keyed file ("key value" lines).
func readKey(path, key string) (uint64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// Remove kills what is left of the container, deletes it from crun and
// forgets it. An unknown id is not an error.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	r.mu.Lock()
	c, ok := r.containers[id]
	r.mu.Unlock()
	if !ok || c == nil {
		return nil
	}
	if !c.exited() {
		r.killAll(ctx, c)
	}
	if err := r.crunDelete(ctx, id); err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	c.out.abort()
	c.log.close()
	if err := os.RemoveAll(c.bundle); err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	r.mu.Lock()
	if r.containers[id] == c {
		delete(r.containers, id)
		close(c.removed)
	}
	r.mu.Unlock()
	r.log.Info("container removed", "container", id)
	return nil
}

// killAll SIGKILLs every process of the container and waits (bounded) for
// its exit to be recorded, so that the exit is read before the cgroup goes.
func (r *Runtime) killAll(ctx context.Context, c *container) {
	if _, err := r.crun.run(ctx, "kill", "--all", c.id, "KILL"); err != nil && !c.reaped() {
		r.log.Warn("kill before remove", "container", c.id, "error", err)
		_ = unix.Kill(c.pid, unix.SIGKILL) // not reaped: the pid is still the init's
	}
	select {
	case <-c.done:
	case <-time.After(removeWait):
		r.log.Warn("container did not exit after SIGKILL: deleting it anyway", "container", c.id)
	case <-ctx.Done():
	}
}

// crunDelete deletes the container from crun, killing what is left; a
// container crun does not know is gone already.
func (r *Runtime) crunDelete(ctx context.Context, id string) error {
	if _, err := os.Stat(filepath.Join(r.cfg.StateDir, id)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	_, err := r.crun.run(ctx, "delete", "-f", id)
	return err
}

// Update applies new resources (specs.LinuxResources as JSON).
func (r *Runtime) Update(ctx context.Context, id string, resources []byte) error {
	c, err := r.get(id)
	if err != nil {
		return err
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(resources, &res); err != nil {
		return fmt.Errorf("update container %s: resources: %v: %w", id, err, errdefs.ErrInvalidArgument)
	}
	if c.reaped() {
		return fmt.Errorf("update container %s: it has exited: %w", id, errdefs.ErrFailedPrecondition)
	}
	f, err := os.CreateTemp(c.bundle, "update-*.json")
	if err != nil {
		return fmt.Errorf("update container %s: %w", id, err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(resources)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("update container %s: %w", id, err)
	}
	if _, err := r.crun.run(ctx, "update", "--resources", f.Name(), id); err != nil {
		return fmt.Errorf("update container %s: %w", id, err)
	}
	return nil
}

// ReopenLog reopens the container's log file (the host rotated it).
func (r *Runtime) ReopenLog(id string) error {
	c, err := r.get(id)
	if err != nil {
		return err
	}
	if c.exited() {
		return nil // its log is complete and closed
	}
	if err := c.log.reopen(); err != nil {
		return fmt.Errorf("reopen the log of %s: %w", id, err)
	}
	return nil
}
