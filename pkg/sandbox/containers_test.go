package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeImages hands out bind mounts of a directory holding an image's files.
type fakeImages struct {
	f      *fakes
	source string
	mu     sync.Mutex
	rootfs map[string]bool
}

func (i *fakeImages) Resolve(_ context.Context, ref string) (ImageInfo, error) {
	if err := i.f.fail("image"); err != nil {
		return ImageInfo{}, err
	}
	if ref == "missing:1" {
		return ImageInfo{}, errdefs.ErrNotFound
	}
	return ImageInfo{ID: "sha256:img", Config: ocispec.ImageConfig{Cmd: []string{"sh"}, StopSignal: "SIGQUIT"}}, nil
}

func (i *fakeImages) PrepareRootfs(_ context.Context, key, _ string) ([]mount.Mount, error) {
	if err := i.f.fail("rootfs"); err != nil {
		return nil, err
	}
	i.mu.Lock()
	i.rootfs[key] = true
	i.mu.Unlock()
	return []mount.Mount{{Type: "bind", Source: i.source, Options: []string{"rbind", "ro"}}}, nil
}

func (i *fakeImages) PrepareView(ctx context.Context, key, image string) ([]mount.Mount, error) {
	return i.PrepareRootfs(ctx, key, image)
}

// ReadLayers: the fake's images have no layers to read.
func (i *fakeImages) ReadLayers(context.Context, string, func(io.Reader) error) error {
	return nil
}

func (i *fakeImages) RemoveRootfs(_ context.Context, key string) error {
	i.f.mu.Lock()
	failing := i.f.failRelease
	i.f.mu.Unlock()
	if failing {
		return errInjected
	}
	i.mu.Lock()
	delete(i.rootfs, key)
	i.mu.Unlock()
	return nil
}

func (i *fakeImages) RootfsUsage(_ context.Context, key string) (FsUsage, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.rootfs[key] {
		return FsUsage{}, errdefs.ErrNotFound
	}
	return FsUsage{Mountpoint: "/snapshots", UsedBytes: 4096, Inodes: 1}, nil
}

// fakeRuntime is the whole fake backend (fakeBackend is its pod half): a
// "process" is a channel closed when it exits, so every waiter sees the
// exit.
type fakeRuntime struct {
	fakeBackend
	mu      sync.Mutex
	created map[string]*specs.Spec
	exited  map[string]chan struct{}
	done    map[string]ExitStatus
	started map[string]bool
	// detached closes when the manager that waits is "killed" (detach):
	// its waits end as NotFound, so a dead manager records no exit.
	detached chan struct{}
	// deleting, when set, is closed as DeleteContainer begins, which then
	// waits for deleteGate: a removal held half-way.
	deleting, deleteGate chan struct{}
}

// detach ends the waits of every manager so far: the daemon they stand
// for is dead.
func (r *fakeRuntime) detach() {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.detached)
	r.detached = make(chan struct{})
}

func newFakeRuntime(f *fakes) *fakeRuntime {
	return &fakeRuntime{fakeBackend: fakeBackend{f}, created: map[string]*specs.Spec{},
		exited: map[string]chan struct{}{}, done: map[string]ExitStatus{}, started: map[string]bool{}, detached: make(chan struct{})}
}

func (r *fakeRuntime) CreateContainer(_ context.Context, _ *Pod, c *Container, spec *specs.Spec) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.created[c.ID] = spec // a failed create may leave state: DeleteContainer must clean it
	if err := r.f.fail("create"); err != nil {
		return 0, err
	}
	r.exited[c.ID] = make(chan struct{})
	return 4242, nil
}

func (r *fakeRuntime) StartContainer(_ context.Context, _ *Pod, c *Container) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started[c.ID] = true
	return nil
}

// exit ends a container's "process" with st.
func (r *fakeRuntime) exit(id string, st ExitStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, done := r.done[id]; done {
		return
	}
	r.done[id] = st
	if ch, ok := r.exited[id]; ok {
		close(ch)
	}
}

func (r *fakeRuntime) SignalContainer(_ context.Context, _ *Pod, c *Container, sig int) error {
	r.exit(c.ID, ExitStatus{Code: int32(128 + sig), FinishedAt: time.Now()})
	return nil
}

func (r *fakeRuntime) WaitContainer(ctx context.Context, _ *Pod, c *Container) (ExitStatus, error) {
	r.mu.Lock()
	detached := r.detached
	r.mu.Unlock()
	return r.wait(ctx, c, detached)
}

// managerRuntime is the runtime as one manager sees it: its waits end at
// the first detach after it was made, even a wait begun after that detach
// (a watcher not yet scheduled when its "daemon" died).
type managerRuntime struct {
	*fakeRuntime
	detached chan struct{}
}

func (r *fakeRuntime) forManager() *managerRuntime {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &managerRuntime{fakeRuntime: r, detached: r.detached}
}

func (r *managerRuntime) WaitContainer(ctx context.Context, _ *Pod, c *Container) (ExitStatus, error) {
	return r.wait(ctx, c, r.detached)
}

func (r *fakeRuntime) wait(ctx context.Context, c *Container, detached chan struct{}) (ExitStatus, error) {
	r.mu.Lock()
	ch := r.exited[c.ID]
	r.mu.Unlock()
	if ch == nil {
		return ExitStatus{}, errdefs.ErrNotFound
	}
	select {
	case <-detached:
		return ExitStatus{}, errdefs.ErrNotFound
	case <-ch:
		select {
		case <-detached: // both ready: a dead daemon sees no exit
			return ExitStatus{}, errdefs.ErrNotFound
		default:
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.done[c.ID], nil
	case <-ctx.Done():
		return ExitStatus{}, ctx.Err()
	}
}

func (r *fakeRuntime) ContainerState(_ context.Context, _ *Pod, c *Container) (ProcessState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st, ok := r.done[c.ID]; ok {
		return ProcessState{Status: ProcessExited, Exit: st}, nil
	}
	if _, ok := r.exited[c.ID]; !ok {
		return ProcessState{}, errdefs.ErrNotFound
	}
	if r.started[c.ID] {
		return ProcessState{Status: ProcessRunning}, nil
	}
	return ProcessState{Status: ProcessCreated}, nil
}

func (r *fakeRuntime) DeleteContainer(_ context.Context, _ *Pod, c *Container) error {
	r.mu.Lock()
	delete(r.created, c.ID)
	deleting, gate := r.deleting, r.deleteGate
	r.deleting = nil
	r.mu.Unlock()
	if deleting != nil {
		close(deleting)
		<-gate
	}
	return nil
}

// Exec echoes its command's first word and exits with the number of its
// arguments.
func (r *fakeRuntime) Exec(_ context.Context, _ *Pod, _ *Container, o ExecOptions) (int32, error) {
	if o.Stdout != nil {
		_, _ = o.Stdout.Write([]byte(o.Cmd[0]))
	}
	return int32(len(o.Cmd) - 1), nil
}

func (r *fakeRuntime) Attach(context.Context, *Pod, *Container, AttachOptions) error { return nil }

func (r *fakeRuntime) ReopenLog(context.Context, *Pod, *Container) error { return nil }

// ReleaseExited keeps everything until RemoveContainer, as a microVM's
// backend does (releasingRuntime releases early, as nsbox does).
func (r *fakeRuntime) ReleaseExited(context.Context, *Pod, *Container) error { return nil }

// CheckpointContainer refuses, as a microVM's backend does (criuRuntime
// checkpoints).
func (r *fakeRuntime) CheckpointContainer(_ context.Context, pod *Pod, c *Container, _, _ string) error {
	return fmt.Errorf("container %s: handler %s cannot checkpoint containers: %w", c.ID, pod.Handler, errdefs.ErrFailedPrecondition)
}

func (r *fakeRuntime) RestoreContainer(_ context.Context, pod *Pod, _ *Container) (int, error) {
	return 0, fmt.Errorf("handler %s cannot restore checkpoints: %w", pod.Handler, errdefs.ErrFailedPrecondition)
}

type containerEnv struct {
	f   *fakes
	rt  *fakeRuntime
	img *fakeImages
	dir string
	m   *Manager
}

func newContainerEnv(t *testing.T) *containerEnv {
	testutil.RequireRoot(t) // rootfs bind mounts
	f, dir := newFakes(), t.TempDir()
	src := filepath.Join(dir, "image")
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	os.WriteFile(filepath.Join(src, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(src, "etc/group"), []byte("root:x:0:\n"), 0o644)
	e := &containerEnv{f: f, rt: newFakeRuntime(f), img: &fakeImages{f: f, source: src, rootfs: map[string]bool{}}, dir: dir}
	e.m = e.manager(t)
	return e
}

func (e *containerEnv) manager(t *testing.T) *Manager {
	t.Helper()
	m, err := New(Options{
		StateDir: filepath.Join(e.dir, "state"), ContainerDir: filepath.Join(e.dir, "containers"),
		CheckpointDir: filepath.Join(e.dir, "checkpoints"), DefaultHandler: "runc",
		Backends: map[string]Backend{"runc": e.rt.forManager()}, Network: e.f, Cgroups: e.f, Images: e.img,
		CgroupRoot: "/cradle-test",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

// readyPod runs a pod "p" with a log directory.
func (e *containerEnv) readyPod(t *testing.T) string {
	t.Helper()
	pcfg := podConfig("p")
	pcfg.LogDirectory = filepath.Join(e.dir, "logs")
	pod, err := e.m.RunPod(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

func containerConfig(name string) ctrconfig.Container {
	return ctrconfig.Container{
		Name:    name,
		Image:   "busybox:1",
		Command: []string{"sleep", "1000"},
		LogPath: name + ".log",
	}
}

func (e *containerEnv) assertNoContainers(t *testing.T) {
	t.Helper()
	e.rt.mu.Lock()
	if len(e.rt.created) > 0 {
		t.Errorf("runtime containers left: %v", e.rt.created)
	}
	e.rt.mu.Unlock()
	e.img.mu.Lock()
	if len(e.img.rootfs) > 0 {
		t.Errorf("rootfs snapshots left: %v", e.img.rootfs)
	}
	e.img.mu.Unlock()
	testutil.AssertNoMounts(t, e.dir)
	for _, sub := range []string{"containers", "checkpoints/containers"} {
		if entries, _ := os.ReadDir(filepath.Join(e.dir, sub)); len(entries) > 0 {
			t.Errorf("%s left: %d entries", sub, len(entries))
		}
	}
}

func TestCreateContainerRollsBackEachStep(t *testing.T) {
	for _, step := range []string{"image", "rootfs", "create"} {
		t.Run(step, func(t *testing.T) {
			e := newContainerEnv(t)
			ctx := context.Background()
			pcfg := podConfig("p")
			pcfg.LogDirectory = filepath.Join(e.dir, "logs")
			pod, err := e.m.RunPod(ctx, pcfg)
			if err != nil {
				t.Fatal(err)
			}
			e.f.failAt = step
			if _, err := e.m.CreateContainer(ctx, pod, containerConfig("c")); !errors.Is(err, errInjected) {
				t.Fatalf("err = %v", err)
			}
			e.assertNoContainers(t)
			e.f.failAt = ""
			if _, err := e.m.CreateContainer(ctx, pod, containerConfig("c")); err != nil {
				t.Fatalf("create after rollback (the name must be free): %v", err)
			}
			if err := e.m.RemovePod(ctx, pod); err != nil {
				t.Fatal(err)
			}
			e.assertNoContainers(t)
		})
	}
}

// panicNRI is an NRI relay that panics where a plugin adjusts a container.
type panicNRI struct{ noNRI }

func (panicNRI) CreateContainer(context.Context, *Pod, *Container, *specs.Spec) error {
	panic("injected")
}

// A step that panics (the RPC layer recovers it) is undone like one that
// fails: the daemon found a nil dereference in NRI's spec conversion this
// way, and each such create left its rootfs mounted.
func TestCreateContainerRollsBackAPanic(t *testing.T) {
	e := newContainerEnv(t)
	ctx := context.Background()
	pod := e.readyPod(t)
	e.m.opts.NRI = panicNRI{}
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Fatal("CreateContainer did not panic")
			}
		}()
		_, _ = e.m.CreateContainer(ctx, pod, containerConfig("c"))
	}()
	e.assertNoContainers(t)
	e.m.opts.NRI = noNRI{}
	if _, err := e.m.CreateContainer(ctx, pod, containerConfig("c")); err != nil {
		t.Fatalf("create after the panic (the name must be free): %v", err)
	}
	if err := e.m.RemovePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	e.assertNoContainers(t)
}

func TestContainerLifecycle(t *testing.T) {
	e := newContainerEnv(t)
	ctx := context.Background()
	pcfg := podConfig("p")
	pcfg.LogDirectory = filepath.Join(e.dir, "logs")
	pod, err := e.m.RunPod(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.m.CreateContainer(ctx, pod, containerConfig("c"))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := e.m.Container(id)
	if c.State != ContainerCreated || c.StopSignal != "SIGQUIT" || c.LogPath != filepath.Join(pcfg.LogDirectory, "c.log") || c.ImageID != "sha256:img" {
		t.Errorf("created = %+v", c)
	}
	e.rt.mu.Lock()
	spec := e.rt.created[id]
	e.rt.mu.Unlock()
	if spec == nil || spec.Process.Args[0] != "sleep" || spec.Linux.CgroupsPath == "" {
		t.Fatalf("spec = %+v", spec)
	}
	if _, err := e.m.CreateContainer(ctx, pod, containerConfig("c")); !errdefs.IsAlreadyExists(err) {
		t.Errorf("duplicate container name: %v", err)
	}
	bad := containerConfig("escape")
	bad.LogPath = "../../etc/evil.log"
	if _, err := e.m.CreateContainer(ctx, pod, bad); !errdefs.IsInvalidArgument(err) {
		t.Errorf("escaping log path: %v", err)
	}
	if _, err := e.m.CreateContainer(ctx, "nope", containerConfig("x")); !errdefs.IsNotFound(err) {
		t.Errorf("unknown pod: %v", err)
	}
	if err := e.m.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.m.StartContainer(ctx, id); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("second start: %v", err)
	}
	if res, err := e.m.ExecSync(ctx, id[:10], []string{"echo"}, time.Second); err != nil || string(res.Stdout) != "echo" {
		t.Errorf("ExecSync = %+v, %v", res, err)
	}
	if code, err := e.m.Exec(ctx, id, ExecOptions{Cmd: []string{"sh", "-c", "exit 2"}}); err != nil || code != 2 {
		t.Errorf("Exec = %d, %v; want the backend's code 2", code, err)
	}
	if _, err := e.m.Exec(ctx, id, ExecOptions{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Exec without a command: %v", err)
	}
	if _, err := e.m.Exec(ctx, "feedface", ExecOptions{Cmd: []string{"true"}}); !errdefs.IsNotFound(err) {
		t.Errorf("Exec into an unknown container: %v", err)
	}
	if _, err := e.m.PortForward(ctx, pod, 0); !errdefs.IsInvalidArgument(err) {
		t.Errorf("PortForward to port 0: %v", err)
	}
	if _, err := e.m.PortForward(ctx, pod, 80); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("PortForward to a closed port = %v, want the refusal", err)
	}
	if _, err := e.m.PortForward(ctx, "feedface", 80); !errdefs.IsNotFound(err) {
		t.Errorf("PortForward to an unknown pod: %v", err)
	}
	if err := e.m.UpdateContainerResources(ctx, id, &ctrconfig.Resources{CPUShares: 512, MemoryLimit: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	e.f.mu.Lock()
	got := e.f.updates[c.CgroupPath]
	e.f.mu.Unlock()
	if got == nil || got.CPU == nil || *got.CPU.Shares != 512 || *got.Memory.Limit != 64<<20 {
		t.Errorf("cgroup %q updated with %+v", c.CgroupPath, got)
	}
	// The stop signal (SIGQUIT from the image) ends it before the timeout.
	if err := e.m.StopContainer(ctx, id, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c, _ = e.m.Container(id)
	if c.State != ContainerExited || c.ExitCode != 128+int32(syscall.SIGQUIT) || c.Reason != "Error" || c.FinishedAt.IsZero() {
		t.Errorf("after stop = %+v", c)
	}
	if err := e.m.StopContainer(ctx, id, time.Second); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if err := e.m.StopContainer(ctx, "feedface", time.Second); err != nil {
		t.Errorf("stop of an unknown container: %v", err)
	}
	exited := ContainerExited
	if got := e.m.ListContainers(ContainerFilter{PodID: pod, State: &exited}); len(got) != 1 {
		t.Errorf("exited containers of the pod = %v", got)
	}
	if err := e.m.Attach(ctx, id, AttachOptions{}); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Attach to an exited container: %v", err)
	}
	if _, err := e.m.ExecSync(ctx, id, []string{"echo"}, time.Second); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("exec into an exited container: %v", err)
	}
	if err := e.m.RemoveContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.m.RemoveContainer(ctx, id); err != nil {
		t.Errorf("second remove: %v", err)
	}
	e.assertNoContainers(t)
}

// A pod's stop kills its containers; its removal removes them; a daemon
// restart finds a container that exited meanwhile Exited with its code.
func TestContainersFollowTheirPodAndSurviveRestart(t *testing.T) {
	e := newContainerEnv(t)
	ctx := context.Background()
	pod, err := e.m.RunPod(ctx, podConfig("p"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := e.m.CreateContainer(ctx, pod, containerConfig("a"))
	b, _ := e.m.CreateContainer(ctx, pod, containerConfig("b"))
	for _, id := range []string{a, b} {
		if err := e.m.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	// "Restart" with b exiting while the daemon is away.
	// The first manager stands for the killed daemon: its watchers must not
	// record b's exit, so b exits "while it is down" as far as m2 is told.
	e.rt.detach()
	e.rt.exit(b, ExitStatus{Code: 3, FinishedAt: time.Now()})
	m2 := e.manager(t)
	cb, err := m2.Container(b)
	if err != nil || cb.State != ContainerExited || cb.ExitCode != 3 {
		t.Errorf("b after restart = %+v, %v", cb, err)
	}
	if ca, _ := m2.Container(a); ca.State != ContainerRunning {
		t.Errorf("a after restart = %v", ca.State)
	}
	if err := m2.StopPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if ca, _ := m2.Container(a); ca.State != ContainerExited || ca.ExitCode != 137 {
		t.Errorf("a after pod stop = %+v", ca)
	}
	if err := m2.RemovePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if got := m2.ListContainers(ContainerFilter{}); len(got) != 0 {
		t.Errorf("containers after pod removal: %v", got)
	}
	e.assertNoContainers(t)
}

func TestLimitCapabilities(t *testing.T) {
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{
		Bounding:  []string{"CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_KILL"},
		Effective: []string{"CAP_CHOWN", "CAP_SYS_RESOURCE"},
		Permitted: []string{"CAP_CHOWN", "CAP_SYS_RESOURCE"},
	}}}
	dropped := limitCapabilities(spec, []string{"CAP_CHOWN", "CAP_KILL"})
	if len(dropped) != 1 || dropped[0] != "CAP_SYS_RESOURCE" {
		t.Errorf("dropped = %v", dropped)
	}
	c := spec.Process.Capabilities
	if len(c.Bounding) != 2 || len(c.Effective) != 1 || len(c.Permitted) != 1 {
		t.Errorf("capabilities = %+v", c)
	}
	if limitCapabilities(spec, nil) != nil {
		t.Error("nil allowed must keep everything")
	}
}

func TestStopSignal(t *testing.T) {
	for _, tt := range []struct {
		cfg   string
		image string
		want  string
	}{
		{"SIGUSR1", "SIGQUIT", "SIGUSR1"},
		{"", "SIGQUIT", "SIGQUIT"},
		{"", "quit", "SIGQUIT"},
		{"", "", "SIGTERM"},
		{"", "NOTASIGNAL", "SIGTERM"},
	} {
		if got := stopSignal(ctrconfig.Container{StopSignal: tt.cfg}, tt.image); got != tt.want {
			t.Errorf("stopSignal(%v, %q) = %q, want %q", tt.cfg, tt.image, got, tt.want)
		}
	}
}

func TestLimitedBuffer(t *testing.T) {
	tests := []struct {
		name   string
		limit  int
		writes []string
		want   string
	}{
		{"under", 10, []string{"abc", "def"}, "abcdef"},
		{"exact", 6, []string{"abc", "def"}, "abcdef"},
		{"split", 4, []string{"abc", "def"}, "abcd"},
		{"over", 2, []string{"abc", "def", "ghi"}, "ab"},
		{"zero", 0, []string{"abc"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &limitedBuffer{left: tt.limit}
			for _, s := range tt.writes {
				if n, err := l.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write(%q) = %d, %v: the rest must be drained, not refused", s, n, err)
				}
			}
			if l.b.String() != tt.want {
				t.Errorf("got %q, want %q", l.b.String(), tt.want)
			}
		})
	}
}

// A container created with no log path, in a pod made with no log
// directory (crictl, critest), still gets an absolute log file, under
// cradle's log directory: kubelet deletes `<log path>*` when it removes a
// container, and an empty path meant `*` in its working directory.
func TestContainerWithoutLogPath(t *testing.T) {
	e := newContainerEnv(t)
	ctx := context.Background()
	pod, err := e.m.RunPod(ctx, podConfig("p")) // no log directory
	if err != nil {
		t.Fatal(err)
	}
	cfg := containerConfig("c")
	cfg.LogPath = ""
	id, err := e.m.CreateContainer(ctx, pod, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.m.Container(id)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(e.dir, "logs", pod, id+".log")
	if c.LogPath != want {
		t.Errorf("log path = %q, want %q", c.LogPath, want)
	}
	if _, err := os.Stat(filepath.Dir(want)); err != nil {
		t.Errorf("log directory: %v", err)
	}
	if err := e.m.RemovePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "logs", pod)); !os.IsNotExist(err) {
		t.Errorf("pod log directory left after RemovePod: %v", err)
	}
	e.assertNoContainers(t)
}

// kubelet sends a hugepage limit of 0 for every page size the node has;
// where the pod's cgroup has no hugetlb controller (this project's hybrid
// CI host) they are left out of the spec, while a limit the pod asked for
// is refused.
func TestHugepageLimitsTheHostCannotEnforce(t *testing.T) {
	e := newContainerEnv(t)
	e.f.controllers = map[string]bool{"cpu": true, "cpuacct": true, "memory": true, "pids": true}
	ctx := context.Background()
	pcfg := podConfig("p")
	pcfg.LogDirectory = filepath.Join(e.dir, "podlogs")
	pod, err := e.m.RunPod(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := containerConfig("c")
	cfg.Resources = &ctrconfig.Resources{
		CPUShares: 2, MemoryLimit: 64 << 20, HugepageLimits: []ctrconfig.HugepageLimit{{PageSize: "2MB"}, {PageSize: "1GB"}}}
	id, err := e.m.CreateContainer(ctx, pod, cfg)
	if err != nil {
		t.Fatalf("kubelet's default hugepage limits: %v", err)
	}
	e.rt.mu.Lock()
	spec := e.rt.created[id]
	e.rt.mu.Unlock()
	if got := spec.Linux.Resources.HugepageLimits; len(got) != 0 {
		t.Errorf("hugepage limits in the spec: %+v", got)
	}
	if got := spec.Linux.Resources.Memory; got == nil || *got.Limit != 64<<20 {
		t.Errorf("memory limit lost: %+v", got)
	}
	asked := containerConfig("asked")
	asked.Resources = &ctrconfig.Resources{
		HugepageLimits: []ctrconfig.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}}}
	if _, err := e.m.CreateContainer(ctx, pod, asked); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("an explicit hugepage limit: err = %v, want InvalidArgument", err)
	}
	if err := e.m.UpdateContainerResources(ctx, id, &ctrconfig.Resources{
		HugepageLimits: []ctrconfig.HugepageLimit{{PageSize: "2MB"}}}); err != nil {
		t.Errorf("update with kubelet's default hugepage limits: %v", err)
	}
	if err := e.m.RemovePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	e.assertNoContainers(t)
}

// A CreateContainer whose step fails and whose undo fails too leaves the
// container listed as Unknown until RemoveContainer can finish it.
func TestFailedUndoKeepsTheContainerListed(t *testing.T) {
	e := newContainerEnv(t)
	ctx := context.Background()
	pod := e.readyPod(t)
	e.f.failAt, e.f.failRelease = "create", true
	if _, err := e.m.CreateContainer(ctx, pod, containerConfig("c")); !errors.Is(err, errInjected) {
		t.Fatalf("err = %v", err)
	}
	cs := e.m.ListContainers(ContainerFilter{})
	if len(cs) != 1 || cs[0].State != ContainerUnknown {
		t.Fatalf("after a failed undo: %+v, want one Unknown container", cs)
	}
	e.f.failAt, e.f.failRelease = "", false
	if err := e.m.RemoveContainer(ctx, cs[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.CreateContainer(ctx, pod, containerConfig("c")); err != nil {
		t.Errorf("the name is free once it is removed: %v", err)
	}
	if err := e.m.RemovePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	e.assertNoContainers(t)
}

// The runtime, not the record, says where a container is: one recorded as
// Created that runs (a crash right after the runtime started it) is
// Running after a restart, and starting it again starts nothing.
func TestRecoverAsksTheRuntime(t *testing.T) {
	e := newContainerEnv(t)
	ctx := context.Background()
	pod := e.readyPod(t)
	id, err := e.m.CreateContainer(ctx, pod, containerConfig("c"))
	if err != nil {
		t.Fatal(err)
	}
	e.rt.started[id] = true // started; the record still says Created
	e.rt.detach()
	m2 := e.manager(t)
	if c, _ := m2.Container(id); c.State != ContainerRunning {
		t.Fatalf("after the restart: %v, want Running", c.State)
	}
	if err := m2.StartContainer(ctx, id); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("start again: %v, want FailedPrecondition", err)
	}
	if err := m2.RemovePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	e.assertNoContainers(t)
}

// A container whose pod checkpoint is lost is killed and released at the
// next start, never left running under a pod nobody lists; a container
// whose own checkpoint is unreadable too.
// A checkpoint that cannot be read, truncated or of a version this daemon
// does not know (written by a newer cradle), does not stop recovery: its
// object is released from its ID.
func TestRecoverReleasesOrphans(t *testing.T) {
	truncated := func([]byte) []byte { return []byte(`{"version": 1, "data": {"ID": "tru`) }
	future := func(b []byte) []byte { return bytes.Replace(b, []byte(`{"version":2,`), []byte(`{"version":3,`), 1) }
	for _, tc := range []struct {
		kind, name string
		rewrite    func([]byte) []byte
	}{{podKind, "truncated", truncated}, {containerKind, "truncated", truncated}, {podKind, "future", future}, {containerKind, "future", future}} {
		kind := tc.kind
		t.Run(kind+"/"+tc.name, func(t *testing.T) {
			e := newContainerEnv(t)
			ctx := context.Background()
			pod := e.readyPod(t)
			id, err := e.m.CreateContainer(ctx, pod, containerConfig("c"))
			if err != nil {
				t.Fatal(err)
			}
			if err := e.m.StartContainer(ctx, id); err != nil {
				t.Fatal(err)
			}
			victim := pod
			if kind == containerKind {
				victim = id
			}
			path := filepath.Join(e.dir, "checkpoints", kind, victim+".json")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.rewrite(b), 0o600); err != nil {
				t.Fatal(err)
			}
			_, errPod := e.m.loadPod(pod)
			_, errCtr := e.m.loadContainer(id)
			if err := map[string]error{podKind: errPod, containerKind: errCtr}[kind]; !errdefs.IsNotImplemented(err) && !errdefs.IsDataLoss(err) {
				t.Errorf("load: %v, want NotImplemented (a future version) or DataLoss", err)
			}
			e.rt.detach()
			m2 := e.manager(t)
			for _, c := range m2.ListContainers(ContainerFilter{}) {
				if c.ID == id && kind == podKind {
					t.Errorf("the container of a lost pod is still listed: %+v", c)
				}
			}
			if kind == podKind {
				if pods := m2.ListPods(PodFilter{}); len(pods) != 0 {
					t.Errorf("pods listed: %+v", pods)
				}
				assertNothingLeft(t, e.f, e.dir)
			} else if err := m2.RemovePod(ctx, pod); err != nil {
				t.Fatal(err)
			}
			e.assertNoContainers(t)
		})
	}
}

// oneContainer runs a pod with one container, started if start.
func (e *containerEnv) oneContainer(t *testing.T, start bool) string {
	t.Helper()
	ctx := context.Background()
	pod, err := e.m.RunPod(ctx, podConfig("p"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.m.CreateContainer(ctx, pod, containerConfig("c"))
	if err != nil {
		t.Fatal(err)
	}
	if start {
		if err := e.m.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// An exit stamped by a clock behind the one that stamped the start (a VM
// guest's) is recorded at the start, never before it.
func TestExitNeverBeforeStart(t *testing.T) {
	e := newContainerEnv(t)
	ctx := context.Background()
	id := e.oneContainer(t, true)
	c, _ := e.m.Container(id)
	e.rt.exit(id, ExitStatus{Code: 0, FinishedAt: c.StartedAt.Add(-200 * time.Millisecond)})
	waitFor(t, func() bool { c, _ = e.m.Container(id); return c.State == ContainerExited })
	if c.FinishedAt.Before(c.StartedAt) {
		t.Errorf("finished at %v, before the start at %v", c.FinishedAt, c.StartedAt)
	}
	if err := e.m.RemoveContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.assertNoContainers(t)
}

// A container that a pod's stop found Created (and so left as it is)
// cannot be started afterwards, in the stopped pod: TestCreatesRaceWithThePodsEnd
// once had such a start, between the stop's look at the container and
// the stop's end.
func TestStartInAStoppedPodIsRefused(t *testing.T) {
	e := newContainerEnv(t)
	ctx := context.Background()
	id := e.oneContainer(t, false)
	c, err := e.m.Container(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.StopPod(ctx, c.PodID); err != nil {
		t.Fatal(err)
	}
	if err := e.m.StartContainer(ctx, id); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("StartContainer in a stopped pod: %v, want FailedPrecondition", err)
	}
	e.rt.mu.Lock()
	started := e.rt.started[id]
	e.rt.mu.Unlock()
	if started {
		t.Error("the runtime started the container")
	}
	if c, err := e.m.Container(id); err != nil || c.State != ContainerCreated {
		t.Errorf("after the refused start: %v %v, want Created", c.State, err)
	}
	if err := e.m.RemovePod(ctx, c.PodID); err != nil {
		t.Errorf("RemovePodSandbox: %v", err)
	}
}

// TestCallsWaitingOnARemovalFindNothing: calls that found a container
// while RemoveContainer held it (and waited for its lock) find it gone
// once the removal is done: NotFound, or nothing to do for a second
// removal; none of them records the removed container again (its
// checkpoint would bring it back at the next start).
func TestCallsWaitingOnARemovalFindNothing(t *testing.T) {
	calls := map[string]func(m *Manager, id string) error{
		"StartContainer": func(m *Manager, id string) error { return m.StartContainer(context.Background(), id) },
		"UpdateContainerResources": func(m *Manager, id string) error {
			return m.UpdateContainerResources(context.Background(), id, &ctrconfig.Resources{CPUShares: 512})
		},
		"Container": func(m *Manager, id string) error { _, err := m.Container(id); return err },
		"ExecSync": func(m *Manager, id string) error {
			_, err := m.Exec(context.Background(), id, ExecOptions{Cmd: []string{"true"}})
			return err
		},
		"RemoveContainer":    func(m *Manager, id string) error { return m.RemoveContainer(context.Background(), id) },
		"StopContainer":      func(m *Manager, id string) error { return m.StopContainer(context.Background(), id, 0) },
		"ReopenContainerLog": func(m *Manager, id string) error { return m.ReopenContainerLog(context.Background(), id) },
	}
	for name, call := range calls {
		for _, running := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/running=%v", name, running), func(t *testing.T) {
				e := newContainerEnv(t)
				ctx := context.Background()
				id := e.oneContainer(t, running)
				deleting, gate := make(chan struct{}), make(chan struct{})
				e.rt.mu.Lock()
				e.rt.deleting, e.rt.deleteGate = deleting, gate
				e.rt.mu.Unlock()
				removed := make(chan error, 1)
				go func() { removed <- e.m.RemoveContainer(ctx, id) }()
				<-deleting // the removal holds the container
				got := make(chan error, 1)
				go func() { got <- call(e.m, id) }()
				time.Sleep(50 * time.Millisecond) // the call finds the container and waits for its lock
				close(gate)
				if err := <-removed; err != nil {
					t.Fatalf("RemoveContainer: %v", err)
				}
				err := <-got
				if name == "RemoveContainer" || name == "StopContainer" {
					if err != nil {
						t.Errorf("%s of a container removed meanwhile: %v, want nil", name, err)
					}
				} else if !errdefs.IsNotFound(err) {
					t.Errorf("%s of a container removed meanwhile: %v, want NotFound", name, err)
				}
				if ids, err := e.m.ckpt.List(containerKind); err != nil || len(ids) != 0 {
					t.Errorf("container checkpoints after the removal: %v, %v", ids, err)
				}
				if got := e.m.ListContainers(ContainerFilter{}); len(got) != 0 {
					t.Errorf("containers listed after the removal: %v", got)
				}
			})
		}
	}
}
