package integration

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// critestMetrics are the metric names cri-tools' "runtime should support
// returning metrics descriptors" and "listing pod sandbox metrics" specs
// expect (pkg/validate/pod.go): what kubelet serves with cAdvisor.
var critestMetrics = []string{
	"container_blkio_device_usage_total",
	"container_cpu_cfs_periods_total",
	"container_cpu_cfs_throttled_periods_total",
	"container_cpu_cfs_throttled_seconds_total",
	"container_cpu_system_seconds_total",
	"container_cpu_usage_seconds_total",
	"container_cpu_user_seconds_total",
	"container_file_descriptors",
	"container_fs_inodes_free",
	"container_fs_inodes_total",
	"container_fs_limit_bytes",
	"container_fs_reads_bytes_total",
	"container_fs_reads_total",
	"container_fs_usage_bytes",
	"container_fs_writes_bytes_total",
	"container_fs_writes_total",
	"container_hugetlb_max_usage_bytes",
	"container_hugetlb_usage_bytes",
	"container_last_seen",
	"container_memory_cache",
	"container_memory_failcnt",
	"container_memory_failures_total",
	"container_memory_kernel_usage",
	"container_memory_mapped_file",
	"container_memory_max_usage_bytes",
	"container_memory_rss",
	"container_memory_swap",
	"container_memory_usage_bytes",
	"container_memory_working_set_bytes",
	"container_network_receive_bytes_total",
	"container_network_receive_errors_total",
	"container_network_receive_packets_dropped_total",
	"container_network_receive_packets_total",
	"container_network_transmit_bytes_total",
	"container_network_transmit_errors_total",
	"container_network_transmit_packets_dropped_total",
	"container_network_transmit_packets_total",
	"container_oom_events_total",
	"container_pressure_cpu_stalled_seconds_total",
	"container_pressure_cpu_waiting_seconds_total",
	"container_pressure_io_stalled_seconds_total",
	"container_pressure_io_waiting_seconds_total",
	"container_pressure_memory_stalled_seconds_total",
	"container_pressure_memory_waiting_seconds_total",
	"container_processes",
	"container_sockets",
	"container_spec_cpu_period",
	"container_spec_cpu_quota",
	"container_spec_cpu_shares",
	"container_spec_memory_limit_bytes",
	"container_spec_memory_reservation_limit_bytes",
	"container_spec_memory_swap_limit_bytes",
	"container_start_time_seconds",
	"container_threads",
	"container_threads_max",
	"container_ulimits_soft",
}

// critestUnimplemented are those critest lets a runtime leave out
// altogether, and critestOptionalValues those it must describe but may send
// no value of (block I/O, which many hosts do not count).
var (
	critestUnimplemented = []string{
		"container_hugetlb_max_usage_bytes",
		"container_hugetlb_usage_bytes",
		"container_pressure_cpu_stalled_seconds_total",
		"container_pressure_cpu_waiting_seconds_total",
		"container_pressure_io_stalled_seconds_total",
		"container_pressure_io_waiting_seconds_total",
		"container_pressure_memory_stalled_seconds_total",
		"container_pressure_memory_waiting_seconds_total",
		"container_spec_cpu_quota",
		"container_spec_memory_reservation_limit_bytes",
		"container_ulimits_soft",
	}
	critestOptionalValues = []string{
		"container_blkio_device_usage_total",
		"container_fs_reads_bytes_total",
		"container_fs_reads_total",
		"container_fs_writes_bytes_total",
		"container_fs_writes_total",
	}
)

// checkCritestMetrics checks what critest checks: every expected metric
// is described with help and label keys, and the work pod (running
// containers) sends each with as many label values as its descriptor has
// keys. It also checks the values added for critest against the cgroup's
// files and /proc.
func checkCritestMetrics(ctx context.Context, t *testing.T, s *statsPods) {
	desc, err := s.d.Runtime.ListMetricDescriptors(ctx, &runtime.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, d := range desc.Descriptors {
		if d.Help == "" || len(d.LabelKeys) == 0 {
			t.Errorf("%s: help %q, label keys %v", d.Name, d.Help, d.LabelKeys)
		}
		keys[d.Name] = d.LabelKeys
	}
	for _, name := range critestMetrics {
		if _, ok := keys[name]; !ok && !slices.Contains(critestUnimplemented, name) {
			t.Errorf("%s is not described", name)
		}
	}
	r, err := s.d.Runtime.ListPodSandboxMetrics(ctx, &runtime.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var work *runtime.PodSandboxMetrics
	for _, pm := range r.PodMetrics {
		if pm.PodSandboxId == s.work {
			work = pm
		}
	}
	if work == nil {
		t.Fatalf("no metrics of the work pod")
	}
	// byContainer[id][name] is every sample of a metric of a container ("" for the pod's own).
	byContainer := map[string]map[string][]*runtime.Metric{"": {}}
	for _, m := range work.Metrics {
		byContainer[""][m.Name] = append(byContainer[""][m.Name], m)
	}
	for _, cm := range work.ContainerMetrics {
		byContainer[cm.ContainerId] = map[string][]*runtime.Metric{}
		for _, m := range cm.Metrics {
			byContainer[cm.ContainerId][m.Name] = append(byContainer[cm.ContainerId][m.Name], m)
		}
	}
	sent := map[string]bool{}
	for _, ms := range byContainer {
		for name, samples := range ms {
			sent[name] = true
			for _, m := range samples {
				if len(m.LabelValues) != len(keys[name]) {
					t.Errorf("%s sent with labels %v, described with %v", name, m.LabelValues, keys[name])
				}
			}
		}
	}
	for _, name := range critestMetrics {
		if !sent[name] && !slices.Contains(critestUnimplemented, name) && !slices.Contains(critestOptionalValues, name) {
			t.Errorf("%s: no value sent for the work pod", name)
		}
	}
	checkHogMetrics(t, s, byContainer[s.hog])
}

// checkHogMetrics checks the hog container's new figures against its
// cgroup's files, /proc, and statfs of the daemon's root.
func checkHogMetrics(t *testing.T, s *statsPods, ms map[string][]*runtime.Metric) {
	one := func(name string, labels ...string) uint64 {
		for _, m := range ms[name] {
			if slices.Equal(m.LabelValues[len(m.LabelValues)-len(labels):], labels) {
				return m.Value.GetValue()
			}
		}
		t.Errorf("hog: no %s%v", name, labels)
		return 0
	}
	// Files read after the metrics were: counters only grow.
	if got, file := one("container_memory_failures_total", "pgfault", "hierarchy"), cgroupFile(t, "memory", s.hogCg, "memory.stat", "total_pgfault"); got == 0 || got > file {
		t.Errorf("pgfault (hierarchy) %d, memory.stat total_pgfault read after %d", got, file)
	}
	if got, file := one("container_memory_failures_total", "pgfault", "container"), cgroupFile(t, "memory", s.hogCg, "memory.stat", "pgfault"); got > file {
		t.Errorf("pgfault (container) %d, memory.stat pgfault read after %d", got, file)
	}
	if got, file := one("container_memory_kernel_usage"), cgroupFile(t, "memory", s.hogCg, "memory.kmem.usage_in_bytes", ""); got == 0 || absDiff(got, file) > 4<<20 {
		t.Errorf("kernel memory %d, memory.kmem.usage_in_bytes %d", got, file)
	}
	if got, file := one("container_spec_cpu_shares"), cgroupFile(t, "cpu", s.hogCg, "cpu.shares", ""); got != file || got == 0 {
		t.Errorf("cpu shares %d, cpu.shares %d", got, file)
	}
	if got, file := one("container_spec_cpu_period"), cgroupFile(t, "cpu", s.hogCg, "cpu.cfs_period_us", ""); got != file || got == 0 {
		t.Errorf("cpu period %d, cpu.cfs_period_us %d", got, file)
	}
	if got, file := one("container_threads_max"), pidsMax(t, s.hogCg); got != file {
		t.Errorf("threads max %d, pids.max %d", got, file)
	}
	// The hog is a shell waiting on sleep: steady counts.
	pids := cgroupProcs(t, s.hogCg)
	var fds, sockets, threads uint64
	for _, pid := range pids {
		entries, err := os.ReadDir(filepath.Join("/proc", pid, "fd"))
		if err != nil {
			t.Fatal(err)
		}
		fds += uint64(len(entries))
		for _, e := range entries {
			if l, _ := os.Readlink(filepath.Join("/proc", pid, "fd", e.Name())); strings.HasPrefix(l, "socket:") {
				sockets++
			}
		}
		entries, err = os.ReadDir(filepath.Join("/proc", pid, "task"))
		if err != nil {
			t.Fatal(err)
		}
		threads += uint64(len(entries))
	}
	for name, want := range map[string]uint64{"container_processes": uint64(len(pids)), "container_threads": threads,
		"container_file_descriptors": fds, "container_sockets": sockets} {
		if got := one(name); got != want {
			t.Errorf("%s = %d, /proc says %d", name, got, want)
		}
	}
	if len(pids) != 2 {
		t.Errorf("hog processes %v: want the shell and its sleep", pids)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(s.d.Root, &fs); err != nil {
		t.Fatal(err)
	}
	device := ms["container_fs_usage_bytes"][0].LabelValues[baseLabelCount:]
	if got := one("container_fs_limit_bytes", device...); got != fs.Blocks*uint64(fs.Bsize) {
		t.Errorf("filesystem limit %d, statfs of the root says %d", got, fs.Blocks*uint64(fs.Bsize))
	}
	if got := one("container_fs_inodes_free", device...); got == 0 || got > fs.Files {
		t.Errorf("free inodes %d of %d", got, fs.Files)
	}
	t.Logf("hog: %d processes, %d threads, %d fds, %d sockets; block I/O samples %d", len(pids), threads, fds, sockets,
		len(ms["container_blkio_device_usage_total"]))
}

// baseLabelCount is how many label values every container metric starts
// with (pod, namespace, container, id, image).
const baseLabelCount = 5

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

// cgroupProcs lists the pids of a container's cgroup (the pids controller's
// cgroup.procs).
func cgroupProcs(t *testing.T, cg string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/pids", cg, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// pidsMax reads pids.max, "max" as 0.
func pidsMax(t *testing.T, cg string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/pids", cg, "pids.max"))
	if err != nil {
		t.Fatal(err)
	}
	if v := strings.TrimSpace(string(b)); v != "max" {
		n, _ := strconv.ParseUint(v, 10, 64)
		return n
	}
	return 0
}
