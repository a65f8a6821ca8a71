package cgroup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/testutil"
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
	cmd := exec.Command("/bin/sh", "-c", `x=$(head -c 33554432 /dev/zero | tr '\0' a); while :; do :; done`)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	if err := m.AddProcess(p, cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	first, err := m.Stats(p)
	if err != nil {
		t.Fatal(err)
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
