package ociruntime_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/sandbox/nsbox/ociruntime"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runtimes are the OCI runtimes every lifecycle test runs against.
var runtimes = []string{"runc", "crun"}

// env is one runtime over a temporary root, with a shared busybox rootfs.
type env struct {
	cfg    ociruntime.Config
	rt     *ociruntime.Runtime
	dir    string
	rootfs string
	n      int
}

func newEnv(t testing.TB, runtime string) *env {
	t.Helper()
	testutil.RequireRoot(t)
	bin := testutil.RequireBinary(t, runtime)
	conmon := testutil.RequireBinary(t, "conmon")
	dir := t.TempDir()
	e := &env{dir: dir, rootfs: filepath.Join(dir, "rootfs")}
	makeRootfs(t, e.rootfs)
	e.cfg = ociruntime.Config{
		Name: runtime, Binary: bin, Conmon: conmon,
		Root: filepath.Join(dir, "root"), StateDir: filepath.Join(dir, "state"),
	}
	rt, err := ociruntime.New(e.cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.rt = rt
	unified := testutil.Mounts(t, "/sys/fs/cgroup/unified")
	t.Cleanup(func() {
		assertNoProcessMentions(t, dir)
		// crun's cgroup v1 view must stay its own: the host keeps cgroup2.
		if got := testutil.Mounts(t, "/sys/fs/cgroup/unified"); len(got) != len(unified) {
			t.Errorf("mounts at /sys/fs/cgroup/unified went from %v to %v", unified, got)
		}
	})
	return e
}

// makeRootfs puts static busybox and its applets into dir.
func makeRootfs(t testing.TB, dir string) {
	t.Helper()
	src := fixtures.BusyboxPath(t)
	for _, d := range []string{"bin", "proc", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "echo", "sleep", "cat", "yes", "head", "true", "stty"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
}

// container is one created container and its paths.
type container struct {
	id, bundle, log, cgroup string
	pid                     int
}

// bundle writes a bundle running args, with an absolute cgroup path of its
// own that the test removes at the end.
func (e *env) bundle(t testing.TB, args ...string) container {
	t.Helper()
	e.n++
	id := fmt.Sprintf("c%d", e.n)
	c := container{
		id:     id,
		bundle: filepath.Join(e.dir, "bundles", id),
		log:    filepath.Join(e.dir, "logs", id+".log"),
		cgroup: fmt.Sprintf("/cradle-test-%d-%s-%s", os.Getpid(), e.cfg.Name, id),
	}
	for _, d := range []string{c.bundle, filepath.Dir(c.log)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(spec(e.rootfs, c.cgroup, args))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeCgroups(t, c.cgroup) })
	return c
}

func spec(rootfs, cgroup string, args []string) *specs.Spec {
	return &specs.Spec{
		Version: "1.0.2", // crun 1.8 refuses newer versions than it knows
		Root:    &specs.Root{Path: rootfs, Readonly: true},
		Process: &specs.Process{
			Args: args, Cwd: "/", Env: []string{"PATH=/bin"},
			NoNewPrivileges: true,
		},
		Hostname: "box",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: cgroup,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
		},
	}
}

// create writes a bundle and creates it; the test deletes it at the end
// and checks nothing is left.
func (e *env) create(t testing.TB, args ...string) container {
	t.Helper()
	c := e.bundle(t, args...)
	pid, err := e.rt.Create(context.Background(), ociruntime.CreateOptions{ID: c.id, Bundle: c.bundle, LogPath: c.log})
	if err != nil {
		t.Fatalf("Create %s: %v", c.id, err)
	}
	c.pid = pid
	t.Cleanup(func() { e.deleteAndCheck(t, c) })
	return c
}

// run creates and starts.
func (e *env) run(t testing.TB, args ...string) container {
	t.Helper()
	c := e.create(t, args...)
	if err := e.rt.Start(context.Background(), c.id); err != nil {
		t.Fatalf("Start %s: %v", c.id, err)
	}
	return c
}

// deleteAndCheck force-deletes c (twice: Delete is idempotent) and asserts
// nothing of it is left.
func (e *env) deleteAndCheck(t testing.TB, c container) {
	t.Helper()
	monitor, _ := e.rt.MonitorPid(c.id)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 2 {
		if err := e.rt.Delete(ctx, c.id, true); err != nil {
			t.Errorf("Delete %s (%d): %v", c.id, i, err)
		}
	}
	testutil.AssertNoProcess(t, c.pid)
	if monitor > 0 {
		testutil.AssertNoProcess(t, monitor)
	}
	for _, p := range []string{filepath.Join(e.cfg.Root, c.id), filepath.Join(e.cfg.StateDir, c.id),
		filepath.Join(e.cfg.StateDir, "attach", c.id), filepath.Join(c.bundle, "ctl")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
	for _, h := range cgroupHierarchies(t) {
		if _, err := os.Stat(filepath.Join(h, c.cgroup)); err == nil {
			t.Errorf("cgroup %s left behind in %s", c.cgroup, h)
		}
	}
}

// cgroupHierarchies lists the mounted cgroup hierarchies.
func cgroupHierarchies(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 2 && (f[2] == "cgroup" || f[2] == "cgroup2") {
			out = append(out, f[1])
		}
	}
	return out
}

// removeCgroups removes what a failed test may have left of cgroup p.
func removeCgroups(t testing.TB, p string) {
	t.Helper()
	for _, h := range cgroupHierarchies(t) {
		_ = os.Remove(filepath.Join(h, p))
	}
}

// assertNoProcessMentions fails t if a process's command line mentions dir
// (a conmon or runtime process of the test left running).
func assertNoProcessMentions(t testing.TB, dir string) {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(dir)) {
			t.Errorf("process %d left running: %s", pid, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// exited reports whether pid is gone or a zombie (the machine's init may
// be slow to reap conmon, which daemonizes and so is its child).
func exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}
