package guest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
	"github.com/cradle-runtime/cradle/pkg/cleanup"
)

// creation is a container being made: what its steps share.
type creation struct {
	c   *container
	req *api.CreateContainerRequest
	// child is crun create's stdio, which the container inherits; streams
	// the ends the agent reads, by stream name.
	child   []*os.File
	streams map[string]*os.File
	console *consoleSocket
	since   time.Time // before crun create: the init is younger
}

// createSteps run in order; each pushes the undo of what it made.
var createSteps = []struct {
	name string
	run  func(r *Runtime, ctx context.Context, cr *creation, undo *cleanup.Stack) error
}{
	{"bundle", (*Runtime).stepBundle},
	{"log", (*Runtime).stepLog},
	{"stdio", (*Runtime).stepStdio},
	{"runtime", (*Runtime).stepCrunCreate},
	{"init", (*Runtime).stepInit},
}

// Create makes the container of req without starting it. A failure leaves
// nothing behind: no bundle, no crun state, no pipes, no process.
func (r *Runtime) Create(ctx context.Context, req *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	if err := checkID(req.Id); err != nil {
		return nil, err
	}
	spec, err := parseSpec(req.Spec)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", req.Id, err)
	}
	if err := r.reserve(req.Id); err != nil {
		return nil, err
	}
	var undo cleanup.Stack
	defer func() {
		if err := undo.Run(); err != nil {
			r.log.Error("undo of a failed CreateContainer", "container", req.Id, "error", err)
		}
	}()
	undo.Push(func(context.Context) error { r.forget(req.Id); return nil })
	cr := &creation{req: req, c: &container{
		id:        req.Id,
		bundle:    filepath.Join(r.cfg.BundleDir, req.Id),
		cgroup:    cgroupPath(spec),
		tty:       req.Tty,
		stdinOnce: req.StdinOnce,
		reapedCh:  make(chan struct{}),
		done:      make(chan struct{}),
		removed:   make(chan struct{}),
	}}
	for _, step := range createSteps {
		if err := step.run(r, ctx, cr, &undo); err != nil {
			return nil, fmt.Errorf("create container %s: %s: %w", req.Id, step.name, err)
		}
	}
	r.put(cr.c)
	undo.Release()
	r.log.Info("container created", "container", req.Id, "pid", cr.c.pid)
	return &api.CreateContainerResponse{Pid: int32(cr.c.pid)}, nil
}

// parseSpec checks the parts of the spec the agent relies on; the rest is
// crun's to judge.
func parseSpec(b []byte) (*specs.Spec, error) {
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("spec: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if spec.Root == nil || !filepath.IsAbs(spec.Root.Path) {
		return nil, fmt.Errorf("spec: root.path must be an absolute guest path: %w", errdefs.ErrInvalidArgument)
	}
	if spec.Process == nil || len(spec.Process.Args) == 0 {
		return nil, fmt.Errorf("spec: no process args: %w", errdefs.ErrInvalidArgument)
	}
	return &spec, nil
}

// cgroupPath is where crun (cgroupfs driver) puts the container: a relative
// cgroupsPath is below the agent's own cgroup, the guest's root.
func cgroupPath(spec *specs.Spec) string {
	if spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return ""
	}
	return filepath.Join("/", spec.Linux.CgroupsPath)
}

// stepBundle writes the bundle: config.json is the spec as given.
func (r *Runtime) stepBundle(_ context.Context, cr *creation, undo *cleanup.Stack) error {
	if err := os.Mkdir(cr.c.bundle, 0o700); err != nil {
		return err
	}
	undo.Push(func(context.Context) error { return os.RemoveAll(cr.c.bundle) })
	return os.WriteFile(filepath.Join(cr.c.bundle, "config.json"), cr.req.Spec, 0o600)
}

func (r *Runtime) stepLog(_ context.Context, cr *creation, undo *cleanup.Stack) error {
	l, err := openCRILog(cr.req.LogPath, r.log.With("container", cr.c.id))
	if err != nil {
		return err
	}
	undo.Push(func(context.Context) error { l.close(); return nil })
	cr.c.log = l
	cr.c.out = newOutput(l)
	return nil
}

// stepStdio makes the container's stdio: pipes (stdin only if asked for),
// or a console socket crun sends the pty master on.
func (r *Runtime) stepStdio(_ context.Context, cr *creation, undo *cleanup.Stack) error {
	if cr.req.Tty {
		s, err := newConsoleSocket(r.cfg.TempDir)
		if err != nil {
			return err
		}
		undo.Push(func(context.Context) error { s.close(); return nil })
		cr.console = s
		cr.child = []*os.File{nil, nil, nil}
		return nil
	}
	p, err := newStdioPipes(cr.req.Stdin)
	if err != nil {
		return err
	}
	undo.Push(func(context.Context) error { p.closeAll(); return nil })
	cr.child = p.child
	cr.c.stdin = p.stdin
	cr.streams = map[string]*os.File{streamStdout: p.stdout, streamStderr: p.stderr}
	return nil
}

// stepCrunCreate runs crun create; the container's stdio ends crun got are
// closed in the agent once it has them.
func (r *Runtime) stepCrunCreate(ctx context.Context, cr *creation, undo *cleanup.Stack) error {
	c := cr.c
	logFile := filepath.Join(c.bundle, "crun.log")
	args := []string{"--bundle", c.bundle, "--pid-file", filepath.Join(c.bundle, "init.pid")}
	if cr.console != nil {
		args = append(args, "--console-socket", cr.console.path)
	}
	cr.since = time.Now()
	p, err := r.crun.reaper.Start(r.crun.argv(logFile, "create", append(args, c.id)...), cr.child)
	closeFiles(cr.child)
	if err != nil {
		return err
	}
	undo.Push(func(ctx context.Context) error { return r.crunDelete(ctx, c.id) })
	exit, err := r.crun.wait(ctx, p)
	if err != nil {
		return err
	}
	if exit.Code() != 0 {
		return &crunError{Command: "create", Code: exit.Code(), Message: logErrors(logFile)}
	}
	if cr.console == nil {
		return nil
	}
	master, err := cr.console.receive(time.Now().Add(time.Second))
	cr.console.close()
	if err != nil {
		return err
	}
	undo.Push(func(context.Context) error { master.Close(); return nil })
	c.stdin = master
	cr.streams = map[string]*os.File{streamStdout: master}
	return nil
}

// stepInit reads the init's pid, watches it, and starts reading its output.
func (r *Runtime) stepInit(_ context.Context, cr *creation, _ *cleanup.Stack) error {
	pid, err := readPidFile(filepath.Join(cr.c.bundle, "init.pid"))
	if err != nil {
		return err
	}
	cr.c.pid = pid
	exit := r.reaper.Watch(pid, cr.since)
	cr.c.out.start(cr.streams)
	go r.watchExit(cr.c, exit)
	return nil
}

// stdioPipes are a container's stdio pipes: child for crun create, the
// other ends for the agent.
type stdioPipes struct {
	child                 []*os.File
	stdin, stdout, stderr *os.File
}

func newStdioPipes(withStdin bool) (p *stdioPipes, err error) {
	p = &stdioPipes{child: make([]*os.File, 3)}
	defer func() {
		if err != nil {
			p.closeAll()
		}
	}()
	if withStdin {
		if p.child[0], p.stdin, err = os.Pipe(); err != nil {
			return nil, err
		}
	}
	if p.stdout, p.child[1], err = os.Pipe(); err != nil {
		return nil, err
	}
	if p.stderr, p.child[2], err = os.Pipe(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *stdioPipes) closeAll() {
	closeFiles(p.child)
	closeFiles([]*os.File{p.stdin, p.stdout, p.stderr})
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}
