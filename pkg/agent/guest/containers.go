package guest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// container is one container the agent runs with the OCI runtime.
type container struct {
	id, bundle string
	cgroup     string // its cgroup path (the spec's cgroupsPath)
	pid        int
	stdinOnce  bool

	out      *output
	log      *criLog
	stdinMu  sync.Mutex
	stdin    *os.File // nil: none (or closed)
	terminal *os.File // the terminal's master, when it has one

	exited chan struct{} // closed once its init exited and its output drained
	exit   *api.ContainerExit
}

// outputDrain bounds the wait for a container's output after its init
// exited (a process of its that escaped the kill could hold it open).
const outputDrain = 5 * time.Second

func (s *Service) get(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.containers[id]
	if c == nil {
		return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

// runtime runs the OCI runtime with args to its end; its own messages go
// to the bundle's runtime log and are quoted in the error.
func (s *Service) runtime(ctx context.Context, bundle string, args ...string) error {
	logPath := filepath.Join(bundle, "runtime.log")
	_ = os.Remove(logPath)
	full := append([]string{"--root", s.runtimeRoot(), "--log", "file:" + logPath}, args...)
	cmd := exec.Command(s.Runtime, full...)
	return s.Reaper.RunCmd(ctx, cmd, func() string {
		b, _ := os.ReadFile(logPath)
		return strings.TrimSpace(string(b))
	})
}

func (s *Service) runtimeRoot() string { return filepath.Join(s.StateDir, "crun") }

// CreateContainer writes the bundle, makes the container's stdio (pipes,
// or a terminal whose master the runtime sends back) and has the runtime
// create it. On failure nothing of it is left.
func (s *Service) CreateContainer(ctx context.Context, req *api.CreateContainerRequest) (_ *api.CreateContainerResponse, retErr error) {
	var spec specs.Spec
	if err := json.Unmarshal(req.GetSpec(), &spec); err != nil || req.GetId() == "" || strings.ContainsAny(req.GetId(), "/.") {
		return nil, fmt.Errorf("container %q: bad id or spec (%v): %w", req.GetId(), err, errdefs.ErrInvalidArgument)
	}
	s.mu.Lock()
	if s.containers == nil {
		s.containers = map[string]*container{}
	}
	if s.containers[req.Id] != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("container %s: %w", req.Id, errdefs.ErrAlreadyExists)
	}
	c := &container{id: req.Id, bundle: filepath.Join(s.StateDir, "bundles", req.Id), stdinOnce: req.StdinOnce,
		exited: make(chan struct{})}
	s.containers[req.Id] = c // reserved; removed on failure
	s.mu.Unlock()
	if spec.Linux != nil {
		c.cgroup = spec.Linux.CgroupsPath
	}
	defer func() {
		if retErr != nil {
			s.forget(c)
		}
	}()
	if err := os.MkdirAll(c.bundle, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(c.bundle, "config.json"), req.Spec, 0o600); err != nil {
		return nil, err
	}
	log, err := openCRILog(req.LogPath)
	if err != nil {
		return nil, fmt.Errorf("container log: %w", err)
	}
	c.log, c.out = log, newOutput(log)
	if err := s.create(ctx, c, req.Stdin, req.Tty); err != nil {
		log.close()
		return nil, err
	}
	go s.watch(c)
	s.Log.Info("container created", "container", c.id, "pid", c.pid)
	return &api.CreateContainerResponse{Pid: int32(c.pid)}, nil
}

// create runs `crun create` with the container's stdio.
func (s *Service) create(ctx context.Context, c *container, stdin, tty bool) error {
	pidFile := filepath.Join(c.bundle, "init.pid")
	args := []string{"create", "--bundle", c.bundle, "--pid-file", pidFile}
	var console *consoleSocket
	var child stdio
	var err error
	if tty {
		if console, err = listenConsole(filepath.Join(c.bundle, "console.sock")); err != nil {
			return err
		}
		defer console.close()
		args = append(args, "--console-socket", console.path)
		child, err = nullStdio()
	} else {
		child, err = s.pipes(c, stdin)
	}
	if err != nil {
		return err
	}
	defer child.close()
	cmd := exec.Command(s.Runtime, append([]string{"--root", s.runtimeRoot(), "--log", "file:" + filepath.Join(c.bundle, "runtime.log")}, append(args, c.id)...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = child.in, child.out, child.err
	if err := s.Reaper.RunCmd(ctx, cmd, func() string {
		b, _ := os.ReadFile(filepath.Join(c.bundle, "runtime.log"))
		return strings.TrimSpace(string(b))
	}); err != nil {
		c.closeIO()
		return fmt.Errorf("create container %s: %w", c.id, err)
	}
	if tty {
		master, err := console.receive(ctx)
		if err != nil {
			c.closeIO()
			return errors.Join(err, s.runtime(context.Background(), c.bundle, "delete", "-f", c.id))
		}
		c.terminal = master
		if stdin {
			c.stdin = master
		}
		c.out.read("stdout", dupFile(master))
	}
	b, err := os.ReadFile(pidFile)
	if err == nil {
		c.pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if err != nil {
		c.closeIO()
		return errors.Join(fmt.Errorf("container %s's pid: %w", c.id, err), s.runtime(context.Background(), c.bundle, "delete", "-f", c.id))
	}
	return nil
}

// pipes makes the container's stdio pipes: the agent keeps the reading
// ends of stdout and stderr (read from now on) and the writing end of
// stdin; it returns the child's ends.
func (s *Service) pipes(c *container, stdin bool) (stdio, error) {
	var child stdio
	outR, outW, err := os.Pipe()
	if err != nil {
		return child, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return child, err
	}
	child.out, child.err = outW, errW
	if stdin {
		inR, inW, err := os.Pipe()
		if err != nil {
			child.close()
			outR.Close()
			errR.Close()
			return child, err
		}
		child.in, c.stdin = inR, inW
	} else if child.in, err = os.Open(os.DevNull); err != nil {
		child.close()
		outR.Close()
		errR.Close()
		return child, err
	}
	c.out.read("stdout", outR)
	c.out.read("stderr", errR)
	return child, nil
}

// stdio is a child's three streams, closed in the agent once passed on.
type stdio struct{ in, out, err *os.File }

func (s stdio) close() {
	for _, f := range []*os.File{s.in, s.out, s.err} {
		if f != nil {
			_ = f.Close()
		}
	}
}

func nullStdio() (stdio, error) {
	var s stdio
	var err error
	for _, p := range []**os.File{&s.in, &s.out, &s.err} {
		if *p, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
			s.close()
			return stdio{}, err
		}
	}
	return s, nil
}

func dupFile(f *os.File) *os.File {
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return f
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), f.Name())
}

// closeIO closes the agent's ends of the container's stdio.
func (c *container) closeIO() {
	c.stdinMu.Lock()
	defer c.stdinMu.Unlock()
	if c.stdin != nil && c.stdin != c.terminal {
		_ = c.stdin.Close()
	}
	c.stdin = nil
	if c.terminal != nil {
		_ = c.terminal.Close()
		c.terminal = nil
	}
}

// watch waits for the container's init to exit, then for its output, and
// records how it ended (OOM-killed: SIGKILL while its cgroup counted an
// OOM kill).
func (s *Service) watch(c *container) {
	ws := <-s.Reaper.Wait(c.pid)
	if err := c.out.drain(outputDrain); err != nil {
		s.Log.Warn("container output not drained", "container", c.id, "error", err)
	}
	c.log.close()
	code := exitCode(ws)
	c.exit = &api.ContainerExit{ExitCode: code, FinishedAtUnixNs: time.Now().UnixNano(),
		OomKilled: ws.Signaled() && ws.Signal() == unix.SIGKILL && oomKilled(c.cgroup)}
	close(c.exited)
	s.Log.Info("container exited", "container", c.id, "code", code, "oom", c.exit.OomKilled)
}

// oomKilled reads the oom_kill count of a cgroup2 cgroup's memory.events.
func oomKilled(cgroup string) bool {
	if cgroup == "" {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", cgroup, "memory.events"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "oom_kill" && f[1] != "0" {
			return true
		}
	}
	return false
}

// forget drops a container whose create failed: its bundle, its runtime
// state, its IO.
func (s *Service) forget(c *container) {
	c.closeIO()
	_ = s.runtime(context.Background(), c.bundle, "delete", "-f", c.id)
	_ = os.RemoveAll(c.bundle)
	s.mu.Lock()
	delete(s.containers, c.id)
	s.mu.Unlock()
}
