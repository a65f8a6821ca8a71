package cri

import (
	"context"
	"time"

	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/cgroup"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The label keys of cAdvisor's container metrics, which kubelet's
// /metrics/cadvisor serves from ListPodSandboxMetrics.
var (
	baseLabels    = []string{"pod", "namespace", "container", "id", "image"}
	diskLabels    = append(append([]string(nil), baseLabels...), "device")
	networkLabels = append(append([]string(nil), baseLabels...), "interface")
)

// containerMetric is one cAdvisor metric of a container: its descriptor and
// how its value is read (ok false: not reported for this container).
type containerMetric struct {
	name, help string
	typ        runtime.MetricType
	disk       bool // labelled by the filesystem's device too
	value      func(c sandbox.Container, cg *cgroup.Stats, wl *sandbox.FsUsage) (v uint64, ok bool)
}

// fromCgroup reads a value of a live cgroup.
func fromCgroup(f func(*cgroup.Stats) uint64) func(sandbox.Container, *cgroup.Stats, *sandbox.FsUsage) (uint64, bool) {
	return func(_ sandbox.Container, cg *cgroup.Stats, _ *sandbox.FsUsage) (uint64, bool) {
		if cg == nil {
			return 0, false
		}
		return f(cg), true
	}
}

const (
	counter = runtime.MetricType_COUNTER
	gauge   = runtime.MetricType_GAUGE
)

// containerMetrics is what ListPodSandboxMetrics reports of each container;
// ListMetricDescriptors describes exactly these and networkMetrics. Values
// are whole units: the CRI carries integers.
var containerMetrics = []containerMetric{
	{"container_cpu_usage_seconds_total", "Cumulative CPU time consumed in seconds.", counter, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.CPU.UsageNanos / uint64(time.Second) })},
	{"container_cpu_user_seconds_total", "Cumulative user CPU time consumed in seconds.", counter, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.CPU.UserNanos / uint64(time.Second) })},
	{"container_cpu_system_seconds_total", "Cumulative system CPU time consumed in seconds.", counter, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.CPU.SystemNanos / uint64(time.Second) })},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", counter, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.CPU.Periods })},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", counter, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.CPU.ThrottledPeriods })},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", counter, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.CPU.ThrottledNanos / uint64(time.Second) })},
	{"container_memory_cache", "Number of bytes of page cache memory.", gauge, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.Cache })},
	{"container_memory_rss", "Size of RSS in bytes.", gauge, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.RSS })},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", gauge, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.MappedFile })},
	{"container_memory_swap", "Container swap usage in bytes.", gauge, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.SwapUsage })},
	{"container_memory_failcnt", "Number of memory usage hits limits (cgroup v1).", counter, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.Failcnt })},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", gauge, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.Usage })},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.", gauge, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.MaxUsage })},
	{"container_memory_working_set_bytes", "Current working set in bytes.", gauge, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.WorkingSet })},
	{"container_memory_total_active_file_bytes", "Current total active file in bytes.", gauge, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.ActiveFile })},
	{"container_memory_total_inactive_file_bytes", "Current total inactive file in bytes.", gauge, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.InactiveFile })},
	{"container_oom_events_total", "Count of out of memory events observed for the container (cgroup v2).", counter, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.OOMEvents })},
	{"container_processes", "Number of processes running inside the container.", gauge, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Pids })},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", gauge, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.Limit })},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", gauge, false,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.SwapLimit })},
	{"container_spec_cpu_shares", "CPU share of the container.", gauge, false,
		func(c sandbox.Container, _ *cgroup.Stats, _ *sandbox.FsUsage) (uint64, bool) {
			if c.Resources == nil || c.Resources.CPU == nil || c.Resources.CPU.Shares == nil {
				return 0, false
			}
			return *c.Resources.CPU.Shares, true
		}},
	{"container_spec_cpu_period", "CPU period of the container.", gauge, false,
		func(c sandbox.Container, _ *cgroup.Stats, _ *sandbox.FsUsage) (uint64, bool) {
			if c.Resources == nil || c.Resources.CPU == nil || c.Resources.CPU.Period == nil {
				return 0, false
			}
			return *c.Resources.CPU.Period, true
		}},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", gauge, false,
		func(c sandbox.Container, _ *cgroup.Stats, _ *sandbox.FsUsage) (uint64, bool) {
			return uint64(c.StartedAt.Unix()), !c.StartedAt.IsZero()
		}},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", gauge, true,
		func(_ sandbox.Container, _ *cgroup.Stats, wl *sandbox.FsUsage) (uint64, bool) {
			if wl == nil {
				return 0, false
			}
			return wl.UsedBytes, true
		}},
	{"container_fs_inodes_total", "Number of inodes used by the container on this filesystem.", gauge, true,
		func(_ sandbox.Container, _ *cgroup.Stats, wl *sandbox.FsUsage) (uint64, bool) {
			if wl == nil {
				return 0, false
			}
			return wl.Inodes, true
		}},
}

// networkMetric is one cAdvisor network metric of a pod's interface.
type networkMetric struct {
	name, help string
	value      func(sandbox.InterfaceStats) uint64
}

var networkMetrics = []networkMetric{
	{"container_network_receive_bytes_total", "Cumulative count of bytes received.", func(i sandbox.InterfaceStats) uint64 { return i.RxBytes }},
	{"container_network_receive_packets_total", "Cumulative count of packets received.", func(i sandbox.InterfaceStats) uint64 { return i.RxPackets }},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", func(i sandbox.InterfaceStats) uint64 { return i.RxDropped }},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", func(i sandbox.InterfaceStats) uint64 { return i.RxErrors }},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", func(i sandbox.InterfaceStats) uint64 { return i.TxBytes }},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted.", func(i sandbox.InterfaceStats) uint64 { return i.TxPackets }},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", func(i sandbox.InterfaceStats) uint64 { return i.TxDropped }},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", func(i sandbox.InterfaceStats) uint64 { return i.TxErrors }},
}

// container_last_seen is reported for every container, with no source.
const lastSeen = "container_last_seen"

func (s *runtimeServer) ListMetricDescriptors(context.Context, *runtime.ListMetricDescriptorsRequest) (*runtime.ListMetricDescriptorsResponse, error) {
	out := make([]*runtime.MetricDescriptor, 0, len(containerMetrics)+len(networkMetrics)+1)
	out = append(out, &runtime.MetricDescriptor{Name: lastSeen, Help: "Last time the container was seen by the runtime, in seconds since the epoch.", LabelKeys: baseLabels})
	for _, m := range containerMetrics {
		labels := baseLabels
		if m.disk {
			labels = diskLabels
		}
		out = append(out, &runtime.MetricDescriptor{Name: m.name, Help: m.help, LabelKeys: labels})
	}
	for _, m := range networkMetrics {
		out = append(out, &runtime.MetricDescriptor{Name: m.name, Help: m.help, LabelKeys: networkLabels})
	}
	return &runtime.ListMetricDescriptorsResponse{Descriptors: out}, nil
}

func (s *runtimeServer) ListPodSandboxMetrics(ctx context.Context, _ *runtime.ListPodSandboxMetricsRequest) (*runtime.ListPodSandboxMetricsResponse, error) {
	return &runtime.ListPodSandboxMetricsResponse{PodMetrics: s.podMetrics(ctx)}, nil
}

func (s *runtimeServer) podMetrics(ctx context.Context) []*runtime.PodSandboxMetrics {
	sts := s.deps.Pods.ListPodStats(ctx, sandbox.PodFilter{})
	out := make([]*runtime.PodSandboxMetrics, 0, len(sts))
	for _, st := range sts {
		out = append(out, toPodMetrics(st))
	}
	return out
}

// toPodMetrics reports the pod's interfaces (as cAdvisor does, under the
// pod's ID with no container name) and each running container.
func toPodMetrics(st sandbox.PodStats) *runtime.PodSandboxMetrics {
	p, ts := st.Pod, st.At.UnixNano()
	out := &runtime.PodSandboxMetrics{PodSandboxId: p.ID}
	for _, i := range st.Network {
		if i.Name == "lo" {
			continue
		}
		labels := []string{p.Config.Name, p.Config.Namespace, "", p.ID, "", i.Name}
		for _, m := range networkMetrics {
			out.Metrics = append(out.Metrics, &runtime.Metric{Name: m.name, Timestamp: ts, MetricType: counter,
				LabelValues: labels, Value: u64(m.value(i))})
		}
	}
	for _, cs := range st.Containers {
		out.ContainerMetrics = append(out.ContainerMetrics, toContainerMetrics(p, cs))
	}
	return out
}

func toContainerMetrics(p sandbox.Pod, st sandbox.ContainerStats) *runtime.ContainerMetrics {
	c, ts := st.Container, st.At.UnixNano()
	base := []string{p.Config.Name, p.Config.Namespace, c.Config.GetMetadata().GetName(), c.ID, c.ImageRef}
	device := ""
	if st.WritableLayer != nil {
		device = st.WritableLayer.Mountpoint
	}
	disk := append(append([]string(nil), base...), device)
	out := &runtime.ContainerMetrics{ContainerId: c.ID, Metrics: []*runtime.Metric{
		{Name: lastSeen, Timestamp: ts, MetricType: gauge, LabelValues: base, Value: u64(uint64(st.At.Unix()))},
	}}
	for _, m := range containerMetrics {
		v, ok := m.value(c, st.Cgroup, st.WritableLayer)
		if !ok {
			continue
		}
		labels := base
		if m.disk {
			labels = disk
		}
		out.Metrics = append(out.Metrics, &runtime.Metric{Name: m.name, Timestamp: ts, MetricType: m.typ, LabelValues: labels, Value: u64(v)})
	}
	return out
}
