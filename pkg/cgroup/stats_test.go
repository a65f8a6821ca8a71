package cgroup

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/google/go-cmp/cmp"
)

// checkAgainstFiles compares figures with the cgroup's own files.
func checkAgainstFiles(t *testing.T, m *Manager, p string, st Stats) {
	t.Helper()
	if m.V2() {
		stat := keyed(t, filepath.Join(unifiedRoot, p, "memory.stat"))
		if st.Memory.RSS != stat["anon"] {
			t.Errorf("RSS %d, memory.stat anon %d", st.Memory.RSS, stat["anon"])
		}
		return
	}
	stat := keyed(t, filepath.Join("/sys/fs/cgroup/memory", p, "memory.stat"))
	if st.Memory.RSS != stat["total_rss"] || st.Memory.InactiveFile != stat["total_inactive_file"] {
		t.Errorf("RSS %d inactive %d, memory.stat total_rss %d total_inactive_file %d",
			st.Memory.RSS, st.Memory.InactiveFile, stat["total_rss"], stat["total_inactive_file"])
	}
	if want := st.Memory.Usage - st.Memory.InactiveFile; st.Memory.WorkingSet != want {
		t.Errorf("working set %d, want usage - inactive_file = %d", st.Memory.WorkingSet, want)
	}
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpuacct", p, "cpuacct.usage"))
	if err != nil {
		t.Fatal(err)
	}
	// The file is read after Stats: usage only grows.
	if now, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); now < st.CPU.UsageNanos {
		t.Errorf("cpuacct.usage %d < reported %d", now, st.CPU.UsageNanos)
	}
	kmem, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", p, "memory.kmem.usage_in_bytes"))
	if err != nil {
		t.Fatal(err)
	}
	// Kernel memory moves both ways; a process that only spins moves it little.
	if now, _ := strconv.ParseUint(strings.TrimSpace(string(kmem)), 10, 64); now > st.Memory.KernelUsage+1<<20 || now+1<<20 < st.Memory.KernelUsage {
		t.Errorf("kernel memory %d, memory.kmem.usage_in_bytes %d", st.Memory.KernelUsage, now)
	}
	if shares := cgroupUint(t, "cpu", p, "cpu.shares"); st.CPU.Shares != shares || st.CPU.PeriodMicros != cgroupUint(t, "cpu", p, "cpu.cfs_period_us") {
		t.Errorf("cpu shares %d period %d, files say %d and %d", st.CPU.Shares, st.CPU.PeriodMicros, shares, cgroupUint(t, "cpu", p, "cpu.cfs_period_us"))
	}
	if _, err := os.Stat(filepath.Join(hybridUnified, p, "cpu.pressure")); err == nil && st.PSI.CPU == nil {
		t.Error("cpu.pressure exists in the cgroup2 tree but no PSI was reported")
	}
}

func cgroupUint(t *testing.T, controller, p, file string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, p, file))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func keyed(t *testing.T, path string) map[string]uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		out[k], _ = strconv.ParseUint(v, 10, 64)
	}
	return out
}

func TestParsePressure(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     *Pressure
	}{
		{"both", "some avg10=1.50 avg60=0.25 avg300=0.00 total=1234\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n",
			&Pressure{Some: PressureData{Avg10: 1.5, Avg60: 0.25, TotalNanos: 1234000}, Full: PressureData{TotalNanos: 7000}}},
		{"cpu some only", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", &Pressure{}},
		{"empty", "", nil},
		{"garbage", "some avg10=x\n", nil},
		{"unknown line", "most avg10=1\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parsePressure(bufio.NewScanner(strings.NewReader(tc.in)))
			if !ok {
				got = nil
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestFromV1Blkio(t *testing.T) {
	st := &v1.BlkIOStat{
		IoServiceBytesRecursive: []*v1.BlkIOEntry{
			{Device: "/dev/vda", Major: 254, Op: "Read", Value: 4096},
			{Device: "/dev/vda", Major: 254, Op: "Write", Value: 8192},
			{Device: "/dev/vdb", Major: 254, Minor: 16, Op: "Read", Value: 1},
		},
		IoServicedRecursive: []*v1.BlkIOEntry{
			{Device: "/dev/vda", Major: 254, Op: "Write", Value: 2},
			{Device: "/dev/vda", Major: 254, Op: "Read", Value: 1},
			{Major: 8, Op: "Total", Value: 5}, // requests only
		},
	}
	want := []BlockIO{
		{Device: "/dev/vda", Major: 254, Op: "Read", Bytes: 4096, IOs: 1},
		{Device: "/dev/vda", Major: 254, Op: "Write", Bytes: 8192, IOs: 2},
		{Device: "/dev/vdb", Major: 254, Minor: 16, Op: "Read", Bytes: 1},
		{Major: 8, Op: "Total", IOs: 5},
	}
	if diff := cmp.Diff(want, fromV1Blkio(st)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := fromV1Blkio(nil); got != nil {
		t.Errorf("no blkio stats gave %v", got)
	}
}

func TestFromV2IO(t *testing.T) {
	named := false
	names := func() map[[2]uint64]string { named = true; return map[[2]uint64]string{{254, 0}: "/dev/vda"} }
	if got := fromV2IO(nil, names); got != nil || named {
		t.Errorf("no I/O gave %v, devices looked up %v", got, named)
	}
	got := fromV2IO([]*v2.IOEntry{{Major: 254, Rbytes: 10, Wbytes: 20, Rios: 1, Wios: 2}, {Major: 7, Minor: 3, Rbytes: 5}}, names)
	want := []BlockIO{
		{Device: "/dev/vda", Major: 254, Op: "Read", Bytes: 10, IOs: 1},
		{Device: "/dev/vda", Major: 254, Op: "Write", Bytes: 20, IOs: 2},
		{Major: 7, Minor: 3, Op: "Read", Bytes: 5},
		{Major: 7, Minor: 3, Op: "Write"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParsePartitions(t *testing.T) {
	in := "major minor  #blocks  name\n\n 254        0  268435456 vda\n 259        1  1000 nvme0n1p1\n bad line\n"
	want := map[[2]uint64]string{{254, 0}: "/dev/vda", {259, 1}: "/dev/nvme0n1p1"}
	if diff := cmp.Diff(want, parsePartitions(bufio.NewScanner(strings.NewReader(in)))); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestV2KernelMemory(t *testing.T) {
	dir := t.TempDir()
	withKernel := filepath.Join(dir, "with")
	without := filepath.Join(dir, "without")
	if err := os.WriteFile(withKernel, []byte("anon 10\nkernel 4096\nkernel_stack 16\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(without, []byte("anon 10\nkernel_stack 16\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lib := &v2.MemoryStat{KernelStack: 16, Slab: 100, Sock: 4}
	for _, tc := range []struct {
		name, file string
		want       uint64
	}{
		{"memory.stat kernel", withKernel, 4096},
		{"older kernel: the parts summed", without, 120},
		{"no file", filepath.Join(dir, "missing"), 120},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := v2KernelMemory(tc.file, lib); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestWeightToShares(t *testing.T) {
	// runc's shares-to-weight conversion, and back.
	for _, shares := range []uint64{2, 1024, 262144} {
		weight := 1 + (shares-2)*9999/262142
		if got := weightToShares(weight); absDiff(got, shares) > 27 {
			t.Errorf("shares %d -> weight %d -> %d", shares, weight, got)
		}
	}
	if weightToShares(100) != 2597 {
		t.Errorf("weight 100 (the default) = %d shares", weightToShares(100))
	}
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

func TestV2CPUSpec(t *testing.T) {
	dir := t.TempDir()
	for name, v := range map[string]string{"cpu.weight": "100\n", "cpu.max": "max 100000\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if shares, period := v2CPUSpec(dir); shares != 2597 || period != 100000 {
		t.Errorf("shares %d period %d", shares, period)
	}
	if shares, period := v2CPUSpec(filepath.Join(dir, "missing")); shares != 0 || period != 0 {
		t.Errorf("missing cgroup: shares %d period %d", shares, period)
	}
}

func TestLimits(t *testing.T) {
	if limit(9223372036854771712) != 0 || limit(1<<64-1) != 0 || limit(64<<20) != 64<<20 {
		t.Error("limit normalisation")
	}
	if workingSet(10, 20) != 0 || workingSet(30, 10) != 20 {
		t.Error("workingSet")
	}
}

// BenchmarkStats measures one Stats call on a cgroup holding a process.
func BenchmarkStats(b *testing.B) {
	testutil.RequireRoot(b)
	m, err := New()
	if err != nil {
		b.Fatal(err)
	}
	p := fmt.Sprintf("/cradle-bench-%d", os.Getpid())
	if err := m.Create(p, nil); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = m.Delete(context.Background(), p)
		_ = cmd.Wait()
	})
	if err := m.AddProcess(p, cmd.Process.Pid); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := m.Stats(p); err != nil {
			b.Fatal(err)
		}
	}
}
