package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/cgroup"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakes records what exists, so a test can check that nothing is left.
type fakes struct {
	mu       sync.Mutex
	failAt   string // the fake step that fails
	netns    map[string]bool
	networks map[string]bool
	cgroups  map[string]bool
	started  map[string]bool
	updates  map[string]*specs.LinuxResources
	infraPid int // the pid a PID-sharing pod's "infra process" gets; 0: this test's
	// controllers the fake cgroups can hold limits of (nil: every one)
	controllers map[string]bool
	// failRelease makes every cgroup Delete and RemoveRootfs fail: an undo
	// that cannot finish
	failRelease bool
	// deletingPod, when set, is closed as DeletePod begins, which then
	// waits for deletePodGate: a pod removal held half-way.
	deletingPod, deletePodGate chan struct{}
}

func newFakes() *fakes {
	return &fakes{netns: map[string]bool{}, networks: map[string]bool{}, cgroups: map[string]bool{}, started: map[string]bool{}}
}

var errInjected = errors.New("injected failure")

func (f *fakes) fail(step string) error {
	if f.failAt == step {
		return errInjected
	}
	return nil
}

func (f *fakes) NewNetNS(id string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("netns"); err != nil {
		return "", err
	}
	f.netns["/ns/"+id] = true
	return "/ns/" + id, nil
}

func (f *fakes) RemoveNetNS(p string) error {
	f.mu.Lock()
	delete(f.netns, p)
	f.mu.Unlock()
	return nil
}

func (f *fakes) Setup(_ context.Context, pod *Pod) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.networks[pod.ID] = true // a failed Setup may leave state: Teardown must clean it
	if err := f.fail("network"); err != nil {
		return nil, err
	}
	return []string{"10.88.0.2"}, nil
}

func (f *fakes) Teardown(_ context.Context, id string) error {
	f.mu.Lock()
	delete(f.networks, id)
	f.mu.Unlock()
	return nil
}

func (f *fakes) Reconcile(_ context.Context, live []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id := range f.networks {
		if !slices.Contains(live, id) {
			delete(f.networks, id)
		}
	}
	// As the real one sweeps its netns directory.
	for p := range f.netns {
		if !slices.Contains(live, strings.TrimPrefix(p, "/ns/")) {
			delete(f.netns, p)
		}
	}
	return nil
}

func (f *fakes) Create(p string, _ *specs.LinuxResources) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("cgroup"); err != nil {
		return err
	}
	f.cgroups[p] = true
	return nil
}

func (f *fakes) Update(p string, res *specs.LinuxResources) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.updates == nil {
		f.updates = map[string]*specs.LinuxResources{}
	}
	f.updates[p] = res
	return nil
}

func (f *fakes) AddProcess(p string, _ int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.cgroups[p] {
		return fmt.Errorf("no cgroup %s", p)
	}
	return f.fail("infra")
}

func (f *fakes) Stats(p string) (cgroup.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.cgroups[p] {
		return cgroup.Stats{}, errdefs.ErrNotFound
	}
	return cgroup.Stats{CPU: cgroup.CPUStats{UsageNanos: 1000}, Pids: 1}, nil
}

// Processes reports this test process in every cgroup.
func (f *fakes) Processes(p string) ([]int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.cgroups[p] {
		return nil, errdefs.ErrNotFound
	}
	return []int{os.Getpid()}, nil
}

// Controllers reports f.controllers (nil: every controller).
func (f *fakes) Controllers(string) (map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.controllers, nil
}

func (f *fakes) InterfaceStats(context.Context, string) ([]InterfaceStats, error) {
	return []InterfaceStats{{Name: "eth0", RxBytes: 1}, {Name: "lo"}}, nil
}

func (f *fakes) Delete(_ context.Context, p string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failRelease {
		return errInjected
	}
	delete(f.cgroups, p)
	return nil
}

// fakeBackend is the pod half of the fake backend (fakeRuntime is the
// whole): its containers' cgroups are the fake host's.
type fakeBackend struct{ f *fakes }

func (b fakeBackend) host() HostCgroups {
	return HostCgroups{Cgroups: b.f, Log: slog.New(slog.DiscardHandler)}
}

func (b fakeBackend) JoinNetwork(context.Context, *Pod) error { return nil }

func (b fakeBackend) FitPodResources(pod *Pod, res *specs.LinuxResources) (PodResize, error) {
	return b.host().FitPodResources(pod, res)
}

func (b fakeBackend) ContainerControllers(pod *Pod) (map[string]bool, error) {
	return b.host().ContainerControllers(pod)
}

func (b fakeBackend) ContainerCgroupStats(ctx context.Context, pod *Pod, c *Container) (cgroup.Stats, *ProcessCounts, error) {
	return b.host().ContainerCgroupStats(ctx, pod, c)
}

func (b fakeBackend) UpdateContainerCgroup(ctx context.Context, pod *Pod, c *Container, res *specs.LinuxResources) error {
	return b.host().UpdateContainerCgroup(ctx, pod, c, res)
}

func (b fakeBackend) StartPod(_ context.Context, pod *Pod) error {
	b.f.mu.Lock()
	defer b.f.mu.Unlock()
	b.f.started[pod.ID] = true
	pod.Shm = filepath.Join(pod.Dir, "shm")
	if pod.Config.PID == ctrconfig.NamespacePod {
		// An infra process: this test process stands in for it.
		pod.Pid = os.Getpid()
		if b.f.infraPid != 0 {
			pod.Pid = b.f.infraPid
		}
		pod.PidStart, _ = ProcessStart(pod.Pid)
	}
	return b.f.fail("sandbox")
}

func (b fakeBackend) StopPod(context.Context, *Pod) error { return nil }

func (b fakeBackend) DialPort(context.Context, *Pod, int32) (net.Conn, error) {
	return nil, syscall.ECONNREFUSED
}

func (b fakeBackend) DeletePod(_ context.Context, pod *Pod) error {
	b.f.mu.Lock()
	delete(b.f.started, pod.ID)
	deleting, gate := b.f.deletingPod, b.f.deletePodGate
	b.f.deletingPod = nil
	b.f.mu.Unlock()
	if deleting != nil {
		close(deleting)
		<-gate
	}
	return nil
}

func newTestManager(t *testing.T, f *fakes, dir string) *Manager {
	t.Helper()
	return newTestManagerWith(t, f, dir, func(*Options) {})
}

// newTestManagerWith is newTestManager with its options changed by edit.
func newTestManagerWith(t *testing.T, f *fakes, dir string, edit func(*Options)) *Manager {
	t.Helper()
	o := Options{
		StateDir:       filepath.Join(dir, "state"),
		CheckpointDir:  filepath.Join(dir, "checkpoints"),
		DefaultHandler: "runc",
		Backends:       map[string]Backend{"runc": newFakeRuntime(f)},
		Network:        f,
		Cgroups:        f,
		CgroupRoot:     "/cradle-test",
	}
	edit(&o)
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

// kill makes m stand for a dead daemon: it forgets its pods and
// containers, so its watchers, which find nothing, record nothing.
func kill(m *Manager) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pods, m.containers = map[string]*podEntry{}, map[string]*containerEntry{}
}

func podConfig(name string) PodConfig {
	return PodConfig{Name: name, Namespace: "default", UID: "uid-" + name, Labels: map[string]string{"app": name}}
}

// assertNothingLeft checks the fakes, the state directory and the
// checkpoints.
func assertNothingLeft(t *testing.T, f *fakes, dir string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for what, m := range map[string]map[string]bool{"netns": f.netns, "network": f.networks, "cgroup": f.cgroups, "sandbox": f.started} {
		if len(m) > 0 {
			t.Errorf("%s left: %v", what, m)
		}
	}
	for _, sub := range []string{"state", "checkpoints/pods"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		if len(entries) > 0 {
			t.Errorf("%s left: %d entries", sub, len(entries))
		}
	}
}

func TestRunPodRollsBackEachStep(t *testing.T) {
	for _, step := range []string{"cgroup", "netns", "sandbox", "infra", "network"} {
		t.Run(step, func(t *testing.T) {
			f, dir := newFakes(), t.TempDir()
			m := newTestManager(t, f, dir)
			f.failAt = step
			_, err := m.RunPod(context.Background(), podConfig("web"))
			if !errors.Is(err, errInjected) {
				t.Fatalf("err = %v", err)
			}
			assertNothingLeft(t, f, dir)
			if pods := m.ListPods(PodFilter{}); len(pods) != 0 {
				t.Errorf("pods listed after a failed run: %v", pods)
			}
			// The name is free again.
			f.failAt = ""
			id, err := m.RunPod(context.Background(), podConfig("web"))
			if err != nil {
				t.Fatalf("run after rollback: %v", err)
			}
			if err := m.RemovePod(context.Background(), id); err != nil {
				t.Fatal(err)
			}
			assertNothingLeft(t, f, dir)
		})
	}
}

func TestPodLifecycle(t *testing.T) {
	f, dir := newFakes(), t.TempDir()
	m := newTestManager(t, f, dir)
	ctx := context.Background()
	a, err := m.RunPod(ctx, podConfig("a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.RunPod(ctx, podConfig("b"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.RunPod(ctx, podConfig("a")); !errdefs.IsAlreadyExists(err) {
		t.Errorf("duplicate name: %v", err)
	}
	bad := podConfig("c")
	bad.Handler = "kata"
	if _, err := m.RunPod(ctx, bad); !errdefs.IsInvalidArgument(err) {
		t.Errorf("unknown handler: %v", err)
	}
	if err := m.StopPod(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := m.StopPod(ctx, a); err != nil {
		t.Errorf("second stop: %v", err)
	}
	ready := PodReady
	got := ids(m.ListPods(PodFilter{State: &ready}))
	if !slices.Equal(got, []string{b}) {
		t.Errorf("ready pods = %v, want [%s]", got, b)
	}
	if got := ids(m.ListPods(PodFilter{Labels: map[string]string{"app": "a"}})); !slices.Equal(got, []string{a}) {
		t.Errorf("by label = %v", got)
	}
	if got := ids(m.ListPods(PodFilter{ID: a[:8]})); !slices.Equal(got, []string{a}) {
		t.Errorf("by ID prefix = %v", got)
	}
	p, err := m.Pod(b[:10])
	if err != nil || p.ID != b || len(p.IPs) != 1 || p.Config.Hostname != "b" {
		t.Errorf("Pod by prefix = %+v, %v", p, err)
	}
	if _, err := m.Pod("feedface"); !errdefs.IsNotFound(err) {
		t.Errorf("unknown pod: %v", err)
	}

	// A new Manager (a restarted daemon) knows both pods.
	m2 := newTestManager(t, f, dir)
	if got := ids(m2.ListPods(PodFilter{})); len(got) != 2 {
		t.Fatalf("after restart: %v", got)
	}
	if _, err := m2.RunPod(ctx, podConfig("b")); !errdefs.IsAlreadyExists(err) {
		t.Errorf("recovered names are reserved: %v", err)
	}
	for _, id := range []string{a, b, b} {
		if err := m2.RemovePod(ctx, id); err != nil {
			t.Errorf("remove %s: %v", id, err)
		}
	}
	assertNothingLeft(t, f, dir)
}

// A RunPodSandbox whose step fails and whose undo fails too leaves the pod
// listed as Unknown, checkpointed, across a restart, until RemovePod can
// finish it: a leaked resource is never described by nothing.
func TestFailedUndoKeepsThePodListed(t *testing.T) {
	f, dir := newFakes(), t.TempDir()
	m := newTestManager(t, f, dir)
	ctx := context.Background()
	f.failAt, f.failRelease = "network", true
	if _, err := m.RunPod(ctx, podConfig("web")); !errors.Is(err, errInjected) {
		t.Fatalf("err = %v", err)
	}
	pods := m.ListPods(PodFilter{})
	if len(pods) != 1 || pods[0].State != PodUnknown {
		t.Fatalf("after a failed undo: %+v, want one Unknown pod", pods)
	}
	id := pods[0].ID
	if _, err := m.RunPod(ctx, podConfig("web")); !errdefs.IsAlreadyExists(err) {
		t.Errorf("its name is still held: %v", err)
	}
	f.failAt = ""
	m2 := newTestManager(t, f, dir) // a restart cannot finish it either
	if pods := m2.ListPods(PodFilter{}); len(pods) != 1 || pods[0].ID != id || pods[0].State != PodUnknown {
		t.Fatalf("after a restart: %+v", pods)
	}
	if err := m2.RemovePod(ctx, id); !errors.Is(err, errInjected) {
		t.Errorf("remove while the undo still fails: %v", err)
	}
	f.failRelease = false
	if err := m2.RemovePod(ctx, id); err != nil {
		t.Fatal(err)
	}
	if pods := m2.ListPods(PodFilter{}); len(pods) != 0 {
		t.Errorf("listed after removal: %+v", pods)
	}
	assertNothingLeft(t, f, dir)
}

// A crash in the middle of RunPodSandbox leaves a Creating checkpoint and
// whatever the finished steps made; the next start releases it all.
func TestRecoverFinishesInterruptedCreate(t *testing.T) {
	f, dir := newFakes(), t.TempDir()
	m := newTestManager(t, f, dir)
	ctx := context.Background()
	id, err := m.RunPod(ctx, podConfig("crash"))
	if err != nil {
		t.Fatal(err)
	}
	// Turn the finished pod back into the trace of a create killed after
	// its network step.
	e, _ := m.entry(id)
	e.pod.State = PodCreating
	if err := m.save(e.pod); err != nil {
		t.Fatal(err)
	}
	m2 := newTestManager(t, f, dir)
	if pods := m2.ListPods(PodFilter{}); len(pods) != 0 {
		t.Errorf("interrupted pod listed: %v", pods)
	}
	assertNothingLeft(t, f, dir)
}

func ids(pods []Pod) []string {
	out := make([]string, 0, len(pods))
	for _, p := range pods {
		out = append(out, p.ID)
	}
	sort.Strings(out)
	return out
}

func TestResolvConf(t *testing.T) {
	b, err := resolvConf(&DNSConfig{Servers: []string{"10.0.0.10", "10.0.0.11"}, Searches: []string{"a.svc", "svc"}, Options: []string{"ndots:5"}})
	want := "nameserver 10.0.0.10\nnameserver 10.0.0.11\nsearch a.svc svc\noptions ndots:5\n"
	if err != nil || string(b) != want {
		t.Errorf("resolv.conf = %q, %v", b, err)
	}
	if _, err := resolvConf(&DNSConfig{Servers: []string{"1.2.3.4\nnameserver 6.6.6.6"}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("injected line: %v", err)
	}
}

func TestRecoverStopsAPodWhoseProcessEnded(t *testing.T) {
	f, dir := newFakes(), t.TempDir()
	infra := exec.Command("sleep", "1000")
	if err := infra.Start(); err != nil {
		t.Skip("no sleep:", err)
	}
	f.infraPid = infra.Process.Pid
	m := newTestManager(t, f, dir)
	ctx := context.Background()
	id, err := m.RunPod(ctx, podConfig("web"))
	if err != nil {
		t.Fatal(err)
	}
	other := podConfig("other")
	other.PID = ctrconfig.NamespaceContainer // no infra process
	otherID, err := m.RunPod(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	kill(m) // its process ends while the daemon is away
	_ = infra.Process.Kill()
	_ = infra.Wait()
	m2 := newTestManager(t, f, dir)
	if p, _ := m2.Pod(id); p.State != PodNotReady {
		t.Errorf("pod whose process ended: %v", p.State)
	}
	f.mu.Lock()
	if f.networks[id] {
		t.Errorf("its network was kept")
	}
	f.mu.Unlock()
	if p, _ := m2.Pod(otherID); p.State != PodReady {
		t.Errorf("pod with no process of its own: %v", p.State)
	}
	for _, p := range []string{id, otherID} {
		if err := m2.RemovePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	assertNothingLeft(t, f, dir)
}

func TestSystemdSliceCgroupParent(t *testing.T) {
	f, dir := newFakes(), t.TempDir()
	m := newTestManager(t, f, dir)
	m.opts.SystemdCgroups = true
	cfg := podConfig("web")
	cfg.CgroupParent = "kubepods-burstable-pod12.slice"
	id, err := m.RunPod(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := m.Pod(id); p.Cgroup != "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12.slice" {
		t.Errorf("pod cgroup = %q", p.Cgroup)
	}
	bad := podConfig("bad")
	bad.CgroupParent = "kubepods--x.slice"
	if _, err := m.RunPod(context.Background(), bad); !errdefs.IsInvalidArgument(err) {
		t.Errorf("malformed slice: %v", err)
	}
	if err := m.RemovePod(context.Background(), id); err != nil {
		t.Fatal(err)
	}
}

func TestPodStopsWhenItsProcessEnds(t *testing.T) {
	f, dir := newFakes(), t.TempDir()
	infra := exec.Command("sleep", "1000")
	if err := infra.Start(); err != nil {
		t.Skip("no sleep:", err)
	}
	f.infraPid = infra.Process.Pid
	m := newTestManager(t, f, dir)
	ctx := context.Background()
	id, err := m.RunPod(ctx, podConfig("web"))
	if err != nil {
		t.Fatal(err)
	}
	_ = infra.Process.Kill()
	_ = infra.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, _ := m.Pod(id)
		if p.State == PodNotReady {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod still %v after its process ended", p.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.mu.Lock()
	if f.networks[id] {
		t.Error("its network was kept")
	}
	f.mu.Unlock()
	if err := m.RemovePod(ctx, id); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, f, dir)
}

// TestRecoverAfterACrashAtEachRunPodStep: RunPodSandbox checkpoints a
// pod only where a resource needs recording before it is made, so the
// record a crash at any step leaves (the checkpoints and the fakes' state,
// copied at that step's failpoint) is enough for the next start to release
// all that the finished steps made.
func TestRecoverAfterACrashAtEachRunPodStep(t *testing.T) {
	steps := []string{"recorded", "pod files", "cgroup", "network namespace", "sandbox", "sysctls", "network", "sandbox network"}
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			f, dir := newFakes(), t.TempDir()
			crashed := t.TempDir()
			var at *fakes
			m := newTestManagerWith(t, f, dir, func(o *Options) {
				o.Failpoint = func(s string) {
					if s != "runpod:"+step {
						return
					}
					// What a kill -9 here would leave.
					if err := os.CopyFS(crashed, os.DirFS(filepath.Join(dir, "checkpoints"))); err != nil {
						t.Error(err)
					}
					at = f.copy()
				}
			})
			if _, err := m.RunPod(context.Background(), podConfig("crash")); err != nil {
				t.Fatal(err)
			}
			if at == nil {
				t.Fatalf("no failpoint runpod:%s", step)
			}
			kill(m)
			if err := os.RemoveAll(filepath.Join(dir, "checkpoints")); err != nil {
				t.Fatal(err)
			}
			if err := os.CopyFS(filepath.Join(dir, "checkpoints"), os.DirFS(crashed)); err != nil {
				t.Fatal(err)
			}
			m2 := newTestManager(t, at, dir)
			if pods := m2.ListPods(PodFilter{}); len(pods) != 0 {
				t.Errorf("pod interrupted at %s listed: %v", step, pods)
			}
			assertNothingLeft(t, at, dir)
		})
	}
}

// copy is f's state as it is now, for a simulated crash.
func (f *fakes) copy() *fakes {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := newFakes()
	c.infraPid = f.infraPid
	for dst, src := range map[*map[string]bool]map[string]bool{&c.netns: f.netns, &c.networks: f.networks, &c.cgroups: f.cgroups, &c.started: f.started} {
		*dst = maps.Clone(src)
	}
	return c
}
