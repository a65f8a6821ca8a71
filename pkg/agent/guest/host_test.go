package guest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
	"github.com/cradle-runtime/cradle/pkg/agent/client"
	"github.com/cradle-runtime/cradle/pkg/cgroup"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
)

// hostEnv runs the agent's Service on the host, as a child subreaper with
// crun's state in a temp dir, behind a real session: a unix socket, the
// agent's ServeSession on one end, pkg/agent/client on the other.
type hostEnv struct {
	ctx    context.Context
	dir    string
	rootfs string
	state  string
	cgroup string // the parent of the containers' cgroups
	rt     *Runtime
	client *client.Client
	// crunCalls logs crun's command lines, one per line.
	crunCalls string
}

// ranCrun reports whether crun ran command (the word after --root DIR)
// for container id.
func (e *hostEnv) ranCrun(t *testing.T, command, id string) bool {
	t.Helper()
	b, err := os.ReadFile(e.crunCalls)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 3 && f[2] == command && f[len(f)-1] == id {
			return true
		}
	}
	return false
}

// newHostEnv needs root, crun and a static busybox, and a cgroup layout
// crun takes (TestMain hides a hybrid host's cgroup2 mount).
func newHostEnv(t *testing.T) *hostEnv {
	testutil.RequireRoot(t)
	crunPath := testutil.RequireBinary(t, "crun")
	busybox := fixtures.BusyboxPath(t)
	if hybridCgroups() {
		testutil.Unmet(t, "crun refuses this host's hybrid cgroup layout and the test could not hide "+unifiedMount)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	var logBuf testutil.Buffer // the agent's log, shown if the test fails
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logBuf.String())
		}
	})
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := &hostEnv{ctx: ctx, dir: t.TempDir(), cgroup: "/cradle-guest-test-" + strconv.Itoa(os.Getpid())}
	e.rootfs = buildRootfs(t, filepath.Join(e.dir, "rootfs"), busybox)
	e.state = filepath.Join(e.dir, "state")
	short, err := os.MkdirTemp("", "cgt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(short) })
	reaper, err := NewReaper(log)
	if err != nil {
		t.Fatal(err)
	}
	go reaper.Run(ctx)
	// crun through a wrapper that logs each command line, so that tests
	// see which crun commands ran.
	e.crunCalls = filepath.Join(e.dir, "crun-calls")
	wrapper := filepath.Join(e.dir, "crun")
	script := "#!/bin/sh\necho \"$*\" >> " + e.crunCalls + "\nexec " + crunPath + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	e.rt, err = NewRuntime(RuntimeConfig{
		Binary: wrapper, StateDir: e.state, BundleDir: filepath.Join(e.dir, "bundles"), TempDir: short,
		ShmDir: filepath.Join(e.dir, "shm"), SharedDir: filepath.Join(e.dir, "shared"),
	}, reaper, log)
	if err != nil {
		t.Fatal(err)
	}
	e.client = serveOnSocket(ctx, t, &Service{Version: "test", Log: log, PowerOff: func() {}, Runtime: e.rt})
	t.Cleanup(func() { e.removeAll(t) })
	return e
}

// serveOnSocket serves svc on a unix socket the way a VM's port is served,
// one ServeSession per connection, and returns a client of it.
func serveOnSocket(ctx context.Context, t *testing.T, svc *Service) *client.Client {
	path := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _ = ServeSession(ctx, c, svc, svc) }()
		}
	}()
	c, err := client.New("unix://" + path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// removeAll removes every container left (a failed test) and the cgroup
// parent, then checks nothing of crun's state is left.
func (e *hostEnv) removeAll(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range e.rt.list() {
		if err := e.rt.Remove(ctx, c.id); err != nil {
			t.Errorf("remove %s: %v", c.id, err)
		}
	}
	if cg, err := cgroup.New(); err == nil {
		if err := cg.Delete(ctx, e.cgroup); err != nil {
			t.Errorf("remove the test's cgroup: %v", err)
		}
	}
	if left, _ := os.ReadDir(e.state); len(left) > 0 {
		t.Errorf("crun state left: %v", left)
	}
}

// buildRootfs makes a busybox root filesystem at dir.
func buildRootfs(t *testing.T, dir, busybox string) string {
	b, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range append(fixtures.BusyboxApplets, "stty", "tty", "pidof") {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil && !errors.Is(err, os.ErrExist) {
			t.Fatal(err)
		}
	}
	return dir
}

// specOpt edits a test container's spec.
type specOpt func(*specs.Spec)

func withTTY(s *specs.Spec) { s.Process.Terminal = true }

func withMemory(limit int64) specOpt {
	return func(s *specs.Spec) {
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Swap: &limit}}
	}
}

// spec is a container of the busybox rootfs running args, in its own PID,
// IPC, UTS and mount namespaces but the test's network namespace.
func (e *hostEnv) spec(t *testing.T, id string, args []string, opts ...specOpt) []byte {
	caps := []string{"CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN"}
	s := &specs.Spec{
		Version: "1.0.2", // crun 1.8 refuses newer ones
		Process: &specs.Process{
			Args: args, Cwd: "/", Env: []string{"PATH=/bin", "TERM=xterm"},
			Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
		},
		Root:     &specs.Root{Path: e.rootfs},
		Hostname: id,
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: e.cgroup + "/" + id,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
		},
	}
	for _, o := range opts {
		o(s)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// create makes a container; it is removed when the test ends.
func (e *hostEnv) create(t *testing.T, req *api.CreateContainerRequest) *api.CreateContainerResponse {
	t.Helper()
	var resp *api.CreateContainerResponse
	err := e.client.Call(e.ctx, func(s api.AgentService) (err error) {
		resp, err = s.CreateContainer(e.ctx, req)
		return err
	})
	if err != nil {
		t.Fatalf("create %s: %v", req.Id, err)
	}
	t.Cleanup(func() {
		_ = e.client.Call(context.Background(), func(s api.AgentService) error {
			_, err := s.RemoveContainer(context.Background(), &api.ContainerRequest{Id: req.Id})
			return err
		})
		testutil.AssertNoProcess(t, int(resp.Pid))
	})
	return resp
}

// call runs one RPC.
func (e *hostEnv) call(fn func(ctx context.Context, s api.AgentService) error) error {
	return e.client.Call(e.ctx, func(s api.AgentService) error { return fn(e.ctx, s) })
}

func (e *hostEnv) start(t *testing.T, id string) {
	t.Helper()
	if err := e.call(func(ctx context.Context, s api.AgentService) error {
		_, err := s.StartContainer(ctx, &api.ContainerRequest{Id: id})
		return err
	}); err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
}

func (e *hostEnv) wait(t *testing.T, id string) *api.ContainerExit {
	t.Helper()
	var exit *api.ContainerExit
	if err := e.call(func(ctx context.Context, s api.AgentService) (err error) {
		exit, err = s.WaitContainer(ctx, &api.ContainerRequest{Id: id})
		return err
	}); err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	return exit
}

// stream opens a process or port stream.
func (e *hostEnv) stream(t *testing.T, kind byte, header proto.Message) net.Conn {
	t.Helper()
	conn, err := e.client.OpenStream(e.ctx, kind, header)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	return conn
}

// procResult is what a process stream brought.
type procResult struct {
	ready          bool
	stdout, stderr strings.Builder
	exit           *int32
	err            string
}

// readUntil reads frames until the last one, or until stop says so
// (checked first: what was read already may satisfy it).
func readUntil(t *testing.T, conn net.Conn, res *procResult, stop func(*procResult) bool) {
	t.Helper()
	for {
		if stop != nil && stop(res) {
			return
		}
		typ, p, err := api.ReadFrame(conn)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("read frame: %v (so far: %q %q)", err, res.stdout.String(), res.stderr.String())
			}
			return
		}
		switch typ {
		case api.FrameReady:
			res.ready = true
		case api.FrameStdout:
			res.stdout.Write(p)
		case api.FrameStderr:
			res.stderr.Write(p)
		case api.FrameExit:
			code, _ := api.ParseExit(p)
			res.exit = &code
			return
		case api.FrameError:
			res.err = string(p)
			return
		}
	}
}

func send(t *testing.T, conn net.Conn, typ byte, p []byte) {
	t.Helper()
	if err := api.WriteFrame(conn, typ, p); err != nil {
		t.Fatal(err)
	}
}
