package cgroup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func testPath(t *testing.T) string {
	return fmt.Sprintf("/cradle-test-%d-%s", os.Getpid(), t.Name())
}

// assertGone checks that no hierarchy still has a directory for p.
func assertGone(t *testing.T, p string) {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", p))
	direct, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", p))
	if left := append(matches, direct...); len(left) > 0 {
		t.Errorf("cgroup directories left: %v", left)
	}
}

func TestLifecycleAndStats(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("layout %s", m.Layout())
	p := testPath(t)
	limit := int64(64)
	if err := m.Create(p, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Delete(context.Background(), p)
		assertGone(t, p)
	})
	// A process that burns CPU and holds 32 MiB.
	cmd := startIn(t, m, p, exec.Command("/bin/sh", "-c", `x=$(head -c 33554432 /dev/zero | tr '\0' a); while :; do :; done`))
	defer cmd.Wait()
	// Until the shell holds its memory and no longer grows (slow on a
	// loaded machine; the files are compared with the stats below).
	var first Stats
	for deadline, last := time.Now().Add(20*time.Second), uint64(0); ; time.Sleep(200 * time.Millisecond) {
		if first, err = m.Stats(p); err != nil {
			t.Fatal(err)
		}
		if first.Memory.RSS >= 16<<20 && first.Memory.RSS == last || time.Now().After(deadline) {
			break
		}
		last = first.Memory.RSS
	}
	time.Sleep(300 * time.Millisecond)
	second, err := m.Stats(p)
	if err != nil {
		t.Fatal(err)
	}
	if second.CPU.UsageNanos <= first.CPU.UsageNanos || second.CPU.UserNanos+second.CPU.SystemNanos == 0 {
		t.Errorf("CPU usage did not rise: %+v then %+v", first.CPU, second.CPU)
	}
	if mem := second.Memory; mem.WorkingSet < 16<<20 || mem.Usage < mem.WorkingSet || mem.RSS < 16<<20 || mem.PageFaults == 0 || second.Pids == 0 {
		t.Errorf("stats %+v: want >= 16 MiB working set and RSS, page faults and a task", second)
	}
	if mem := second.Memory; second.PidsLimit != 64 || mem.KernelUsage == 0 || mem.OwnPageFaults == 0 || mem.OwnPageFaults > mem.PageFaults {
		t.Errorf("pids limit %d, kernel memory %d, own page faults %d of %d: want 64, some, some and no more than all",
			second.PidsLimit, mem.KernelUsage, mem.OwnPageFaults, mem.PageFaults)
	}
	checkAgainstFiles(t, m, p, second)
	pids, err := m.Processes(p)
	if err != nil || len(pids) == 0 {
		t.Errorf("Processes = %v, %v", pids, err)
	}
	newLimit := int64(32)
	if err := m.Update(p, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &newLimit}}); err != nil {
		t.Errorf("Update: %v", err)
	}
	// On a hybrid host OCI runtimes also make the path in the cgroup2 tree.
	if m.Layout() == LayoutHybrid {
		if err := os.MkdirAll(filepath.Join(hybridUnified, p, "container"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Delete kills what runs inside.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Delete(ctx, p); err != nil {
		t.Fatal(err)
	}
	assertGone(t, p)
	if err := m.Delete(ctx, p); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if _, err := m.Stats(p); !errdefs.IsNotFound(err) {
		t.Errorf("Stats of a deleted cgroup: %v", err)
	}
}

func TestBadPaths(t *testing.T) {
	m := &Manager{}
	for _, p := range []string{"", "relative", "/", "/a/../b", "/a/"} {
		if err := m.Create(p, nil); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Create(%q) = %v", p, err)
		}
	}
}

// Raising a memory limit together with its swap limit works (on v1 the
// memory+swap limit must be raised first).
func TestRaiseMemoryAndSwap(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := New()
	if err != nil {
		t.Fatal(err)
	}
	p := testPath(t)
	mem := func(n int64) *specs.LinuxResources {
		return &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &n, Swap: &n}}
	}
	if err := m.Create(p, mem(64<<20)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Delete(context.Background(), p)
		assertGone(t, p)
	})
	for _, n := range []int64{96 << 20, 32 << 20, 128 << 20} {
		if err := m.Update(p, mem(n)); err != nil {
			t.Errorf("update to %d: %v", n, err)
		}
	}
}

// Direct reads and writes by a process in the cgroup show in its block I/O
// as the controller's own file counts them.
func TestBlockIOStats(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := New()
	if err != nil {
		t.Fatal(err)
	}
	p := testPath(t)
	if err := m.Create(p, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Delete(context.Background(), p)
		assertGone(t, p)
	})
	file := filepath.Join(t.TempDir(), "data")
	// The shell waits for a line, so that it is in the cgroup before any I/O.
	cmd := exec.Command("/bin/sh", "-c", `read go; dd if=/dev/zero of="$1" bs=64k count=16 oflag=direct 2>/dev/null &&
		dd if="$1" of=/dev/null bs=64k iflag=direct 2>/dev/null`, "sh", file)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	startIn(t, m, p, cmd)
	fmt.Fprintln(in, "go")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("direct I/O: %v", err)
	}
	st, err := m.Stats(p)
	if err != nil {
		t.Fatal(err)
	}
	want := blockIOFile(t, m, p)
	got := map[string]uint64{}
	for _, b := range st.BlockIO {
		if b.Op == "Read" || b.Op == "Write" {
			got[fmt.Sprintf("%d:%d %s", b.Major, b.Minor, b.Op)] = b.Bytes
			if b.Device == "" {
				t.Errorf("device %d:%d not named", b.Major, b.Minor)
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("block I/O bytes (-file +reported):\n%s", diff)
	}
	t.Logf("block I/O: %v", st.BlockIO)
}

// blockIOFile reads the bytes read and written per device from the file the
// controller keeps: io.stat on v2; on v1 the recursive blkio file or, where
// the I/O scheduler keeps none, the throttle layer's.
func blockIOFile(t *testing.T, m *Manager, p string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	if m.V2() {
		b, err := os.ReadFile(filepath.Join(unifiedRoot, p, "io.stat"))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			fields := strings.Fields(line)
			for _, kv := range fields[1:] {
				k, v, _ := strings.Cut(kv, "=")
				n, _ := strconv.ParseUint(v, 10, 64)
				switch k {
				case "rbytes":
					out[fields[0]+" Read"] = n
				case "wbytes":
					out[fields[0]+" Write"] = n
				}
			}
		}
		return out
	}
	dir := filepath.Join("/sys/fs/cgroup/blkio", p)
	name := "blkio.io_service_bytes_recursive"
	if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || !strings.Contains(string(b), ":") {
		name = "blkio.throttle.io_service_bytes"
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if fields := strings.Fields(line); len(fields) == 3 && (fields[1] == "Read" || fields[1] == "Write") {
			out[fields[0]+" "+fields[1]], _ = strconv.ParseUint(fields[2], 10, 64)
		}
	}
	return out
}

// TestDeleteAfterAPartialDelete: a daemon killed while it removed a
// cgroup v1 path's directories (one hierarchy at a time) leaves some of
// them; the next Delete kills what still runs in the rest and removes
// them, instead of failing for good because one hierarchy no longer has
// the path (a pod that could never be removed).
func TestDeleteAfterAPartialDelete(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if m.V2() {
		t.Skip("cgroup v2: one directory, removed at once")
	}
	p := testPath(t)
	if err := m.Create(p, &specs.LinuxResources{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { assertGone(t, p) })
	cmd := startIn(t, m, p, exec.Command("/bin/sleep", "300"))
	defer cmd.Wait()
	// The process leaves the pids hierarchy's cgroup, which goes: what a
	// Delete that died after that rmdir left.
	if err := os.WriteFile("/sys/fs/cgroup/pids/cgroup.procs", []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		cmd.Process.Kill()
		t.Skipf("no pids hierarchy to move the process out of: %v", err)
	}
	if err := os.Remove(filepath.Join("/sys/fs/cgroup/pids", p)); err != nil {
		cmd.Process.Kill()
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Delete(ctx, p); err != nil {
		cmd.Process.Kill()
		t.Fatalf("Delete after a partial delete: %v", err)
	}
	if err := cmd.Process.Signal(syscall.Signal(0)); err == nil {
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid)); !strings.Contains(string(st), ") Z") {
			t.Errorf("the process in the remaining hierarchies still runs")
			cmd.Process.Kill()
		}
	}
}

// startIn starts cmd and moves it into the cgroup at p (the caller waits
// for it).
func startIn(t *testing.T, m *Manager, p string, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.AddProcess(p, cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	return cmd
}
