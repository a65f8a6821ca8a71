package cri

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// metricValues keys each sample of the named metrics by its name and the
// label values after the base ones.
func metricValues(ms []*runtime.Metric, names ...string) map[string]uint64 {
	out := map[string]uint64{}
	for _, m := range ms {
		for _, n := range names {
			if m.GetName() == n {
				out[m.GetName()+"{"+strings.Join(m.GetLabelValues()[len(baseLabels):], ",")+"}"] = m.GetValue().GetValue()
			}
		}
	}
	return out
}

func TestContainerMetricValues(t *testing.T) {
	ms := toPodMetrics(testPodStats()).GetContainerMetrics()[0].GetMetrics()
	for _, tc := range []struct {
		name  string
		names []string
		want  map[string]uint64
	}{
		{"processes from /proc, threads limit from the pids cgroup",
			[]string{"container_processes", "container_threads", "container_threads_max", "container_file_descriptors", "container_sockets"},
			map[string]uint64{"container_processes{}": 2, "container_threads{}": 5, "container_threads_max{}": 64,
				"container_file_descriptors{}": 9, "container_sockets{}": 1}},
		{"CPU weight and period as the cgroup holds them",
			[]string{"container_spec_cpu_shares", "container_spec_cpu_period"},
			map[string]uint64{"container_spec_cpu_shares{}": 1024, "container_spec_cpu_period{}": 100000}},
		{"memory failures by type and scope, kernel memory",
			[]string{"container_memory_failures_total", "container_memory_kernel_usage"},
			map[string]uint64{
				"container_memory_failures_total{pgfault,container}": 30, "container_memory_failures_total{pgfault,hierarchy}": 40,
				"container_memory_failures_total{pgmajfault,container}": 3, "container_memory_failures_total{pgmajfault,hierarchy}": 4,
				"container_memory_kernel_usage{}": 8,
			}},
		{"writable layer's filesystem",
			[]string{"container_fs_usage_bytes", "container_fs_limit_bytes", "container_fs_inodes_total", "container_fs_inodes_free"},
			map[string]uint64{"container_fs_usage_bytes{/snap}": 4096, "container_fs_limit_bytes{/snap}": 1 << 30,
				"container_fs_inodes_total{/snap}": 3, "container_fs_inodes_free{/snap}": 99}},
		{"block I/O by device (unnamed ones by number)",
			[]string{"container_fs_reads_bytes_total", "container_fs_reads_total", "container_fs_writes_bytes_total", "container_fs_writes_total"},
			map[string]uint64{"container_fs_reads_bytes_total{/dev/vda}": 4096, "container_fs_reads_total{/dev/vda}": 1,
				"container_fs_writes_bytes_total{/dev/vda}": 8192, "container_fs_writes_total{/dev/vda}": 2,
				"container_fs_writes_bytes_total{7:1}": 512, "container_fs_writes_total{7:1}": 1}},
		{"block I/O bytes by device and operation",
			[]string{"container_blkio_device_usage_total"},
			map[string]uint64{"container_blkio_device_usage_total{/dev/vda,254,0,Read}": 4096,
				"container_blkio_device_usage_total{/dev/vda,254,0,Write}": 8192, "container_blkio_device_usage_total{7:1,7,1,Write}": 512}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, metricValues(ms, tc.names...)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// A container that can no longer be measured (no cgroup, processes or
// writable layer) reports what its record holds, and nothing at zero.
func TestContainerMetricsUnmeasured(t *testing.T) {
	st := testPodStats()
	cs := &st.Containers[0]
	cs.Cgroup, cs.Processes, cs.WritableLayer = nil, nil, nil
	var names []string
	for _, m := range toPodMetrics(st).GetContainerMetrics()[0].GetMetrics() {
		names = append(names, m.GetName())
	}
	want := []string{lastSeen, "container_start_time_seconds"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// Every metric sent is described with the label keys it is sent with, and
// every descriptor has help and label keys (critest checks both).
func TestMetricDescriptorsMatchSamples(t *testing.T) {
	resp, err := (&runtimeServer{}).ListMetricDescriptors(context.Background(), &runtime.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, d := range resp.GetDescriptors() {
		if d.GetHelp() == "" || len(d.GetLabelKeys()) == 0 {
			t.Errorf("%s: help %q, label keys %v", d.GetName(), d.GetHelp(), d.GetLabelKeys())
		}
		keys[d.GetName()] = d.GetLabelKeys()
	}
	pm := toPodMetrics(testPodStats())
	all := pm.GetMetrics()
	for _, cm := range pm.GetContainerMetrics() {
		all = append(all, cm.GetMetrics()...)
	}
	sent := map[string]bool{}
	for _, m := range all {
		sent[m.GetName()] = true
		if k, ok := keys[m.GetName()]; !ok || len(k) != len(m.GetLabelValues()) {
			t.Errorf("%s sent with labels %v, described with %v", m.GetName(), m.GetLabelValues(), k)
		}
	}
	// testPodStats has a figure for everything: every descriptor is sent.
	for name := range keys {
		if !sent[name] {
			t.Errorf("%s described but not sent", name)
		}
	}
	if got, want := keys["container_blkio_device_usage_total"], append(append([]string(nil), baseLabels...), "device", "major", "minor", "operation"); !cmp.Equal(got, want) {
		t.Errorf("container_blkio_device_usage_total label keys %v, want %v", got, want)
	}
}
