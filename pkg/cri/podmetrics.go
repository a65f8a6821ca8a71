package cri

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/cradle-runtime/cradle/pkg/cgroup"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The label keys of cAdvisor's container metrics, which kubelet's
// /metrics/cadvisor serves from ListPodSandboxMetrics. A metric's own label
// keys (containerMetric.labels) follow these.
var (
	baseLabels    = []string{"pod", "namespace", "container", "id", "image"}
	networkLabels = append(append([]string(nil), baseLabels...), "interface")
)

// sample is one value of a metric, with the values of its own labels.
type sample struct {
	labels []string
	value  uint64
}

// containerMetric is one cAdvisor metric of a container: its descriptor and
// how its values are read (none: not reported for this container).
type containerMetric struct {
	name, help string
	typ        runtime.MetricType
	labels     []string // label keys after baseLabels
	values     func(st *sandbox.ContainerStats) []sample
}

const (
	counter = runtime.MetricType_COUNTER
	gauge   = runtime.MetricType_GAUGE
)

// Label keys of cAdvisor's metrics beyond the base ones.
var (
	deviceLabel   = []string{"device"}
	blkioLabels   = []string{"device", "major", "minor", "operation"}
	failureLabels = []string{"failure_type", "scope"}
)

// fromCgroup reads a value of a live cgroup.
func fromCgroup(f func(*cgroup.Stats) uint64) func(*sandbox.ContainerStats) []sample {
	return func(st *sandbox.ContainerStats) []sample {
		if st.Cgroup == nil {
			return nil
		}
		return []sample{{value: f(st.Cgroup)}}
	}
}

// fromSpec reads a value of the container's record (ok false: none).
func fromSpec(f func(sandbox.Container) (uint64, bool)) func(*sandbox.ContainerStats) []sample {
	return func(st *sandbox.ContainerStats) []sample {
		v, ok := f(st.Container)
		if !ok {
			return nil
		}
		return []sample{{value: v}}
	}
}

// fromLayer reads a value of the writable layer, labelled by its filesystem.
func fromLayer(f func(*sandbox.FsUsage) uint64) func(*sandbox.ContainerStats) []sample {
	return func(st *sandbox.ContainerStats) []sample {
		if st.WritableLayer == nil {
			return nil
		}
		return []sample{{labels: []string{st.WritableLayer.Mountpoint}, value: f(st.WritableLayer)}}
	}
}

// fromProcesses reads a count over the container's processes.
func fromProcesses(f func(*sandbox.ProcessCounts) uint64) func(*sandbox.ContainerStats) []sample {
	return func(st *sandbox.ContainerStats) []sample {
		if st.Processes == nil {
			return nil
		}
		return []sample{{value: f(st.Processes)}}
	}
}

// fromBlockIO reads one figure of each device's I/O of operation op,
// labelled by the device.
func fromBlockIO(op string, f func(cgroup.BlockIO) uint64) func(*sandbox.ContainerStats) []sample {
	return func(st *sandbox.ContainerStats) []sample {
		if st.Cgroup == nil {
			return nil
		}
		var out []sample
		for _, b := range st.Cgroup.BlockIO {
			if b.Op == op {
				out = append(out, sample{labels: []string{deviceName(b)}, value: f(b)})
			}
		}
		return out
	}
}

// blkioUsage is cAdvisor's container_blkio_device_usage_total: bytes by
// device and operation.
func blkioUsage(st *sandbox.ContainerStats) []sample {
	if st.Cgroup == nil {
		return nil
	}
	out := make([]sample, 0, len(st.Cgroup.BlockIO))
	for _, b := range st.Cgroup.BlockIO {
		out = append(out, sample{
			labels: []string{deviceName(b), strconv.FormatUint(b.Major, 10), strconv.FormatUint(b.Minor, 10), b.Op},
			value:  b.Bytes,
		})
	}
	return out
}

// deviceName is the device's /dev name, or major:minor where it has none.
func deviceName(b cgroup.BlockIO) string {
	if b.Device != "" {
		return b.Device
	}
	return fmt.Sprintf("%d:%d", b.Major, b.Minor)
}

// memoryFailures is cAdvisor's container_memory_failures_total: page
// faults by kind, of the cgroup's own tasks and of its whole hierarchy.
func memoryFailures(st *sandbox.ContainerStats) []sample {
	if st.Cgroup == nil {
		return nil
	}
	m := st.Cgroup.Memory
	return []sample{
		{labels: []string{"pgfault", "container"}, value: m.OwnPageFaults},
		{labels: []string{"pgfault", "hierarchy"}, value: m.PageFaults},
		{labels: []string{"pgmajfault", "container"}, value: m.OwnMajorPageFaults},
		{labels: []string{"pgmajfault", "hierarchy"}, value: m.MajorPageFaults},
	}
}

// containerMetrics is what ListPodSandboxMetrics reports of each container;
// ListMetricDescriptors describes exactly these and networkMetrics. Values
// are whole units: the CRI carries integers.
var containerMetrics = []containerMetric{
	{"container_cpu_usage_seconds_total", "Cumulative CPU time consumed in seconds.", counter, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.CPU.UsageNanos / uint64(time.Second) })},
	{"container_cpu_user_seconds_total", "Cumulative user CPU time consumed in seconds.", counter, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.CPU.UserNanos / uint64(time.Second) })},
	{"container_cpu_system_seconds_total", "Cumulative system CPU time consumed in seconds.", counter, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.CPU.SystemNanos / uint64(time.Second) })},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", counter, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.CPU.Periods })},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", counter, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.CPU.ThrottledPeriods })},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", counter, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.CPU.ThrottledNanos / uint64(time.Second) })},
	{"container_memory_cache", "Number of bytes of page cache memory.", gauge, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.Cache })},
	{"container_memory_rss", "Size of RSS in bytes.", gauge, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.RSS })},
	{"container_memory_kernel_usage", "Size of the kernel memory charged to the container in bytes.", gauge, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.KernelUsage })},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", gauge, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.MappedFile })},
	{"container_memory_swap", "Container swap usage in bytes.", gauge, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.SwapUsage })},
	{"container_memory_failcnt", "Number of memory usage hits limits (cgroup v1).", counter, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.Failcnt })},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures (page faults by type and scope).", counter, failureLabels,
		memoryFailures},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", gauge, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.Usage })},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.", gauge, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.MaxUsage })},
	{"container_memory_working_set_bytes", "Current working set in bytes.", gauge, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.WorkingSet })},
	{"container_memory_total_active_file_bytes", "Current total active file in bytes.", gauge, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.ActiveFile })},
	{"container_memory_total_inactive_file_bytes", "Current total inactive file in bytes.", gauge, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.InactiveFile })},
	{"container_oom_events_total", "Count of out of memory events observed for the container (cgroup v2).", counter, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.OOMEvents })},
	{"container_processes", "Number of processes running inside the container.", gauge, nil,
		fromProcesses(func(p *sandbox.ProcessCounts) uint64 { return p.Processes })},
	{"container_threads", "Number of threads running inside the container.", gauge, nil,
		fromProcesses(func(p *sandbox.ProcessCounts) uint64 { return p.Threads })},
	{"container_threads_max", "Maximum number of threads allowed inside the container (pids limit); 0 means unlimited.", gauge, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.PidsLimit })},
	{"container_file_descriptors", "Number of open file descriptors of the container's processes.", gauge, nil,
		fromProcesses(func(p *sandbox.ProcessCounts) uint64 { return p.FileDescriptors })},
	{"container_sockets", "Number of open sockets of the container's processes.", gauge, nil,
		fromProcesses(func(p *sandbox.ProcessCounts) uint64 { return p.Sockets })},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", gauge, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.Limit })},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", gauge, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.Memory.SwapLimit })},
	{"container_spec_cpu_shares", "CPU share of the container.", gauge, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.CPU.Shares })},
	{"container_spec_cpu_period", "CPU period of the container.", gauge, nil,
		fromCgroup(func(s *cgroup.Stats) uint64 { return s.CPU.PeriodMicros })},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", gauge, nil,
		fromSpec(func(c sandbox.Container) (uint64, bool) {
			return uint64(c.StartedAt.Unix()), !c.StartedAt.IsZero()
		})},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", gauge, deviceLabel,
		fromLayer(func(u *sandbox.FsUsage) uint64 { return u.UsedBytes })},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem (its size).", gauge, deviceLabel,
		fromLayer(func(u *sandbox.FsUsage) uint64 { return u.CapacityBytes })},
	{"container_fs_inodes_total", "Number of inodes used by the container on this filesystem.", gauge, deviceLabel,
		fromLayer(func(u *sandbox.FsUsage) uint64 { return u.Inodes })},
	{"container_fs_inodes_free", "Number of free inodes on this filesystem.", gauge, deviceLabel,
		fromLayer(func(u *sandbox.FsUsage) uint64 { return u.InodesFree })},
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read from this device.", counter, deviceLabel,
		fromBlockIO("Read", func(b cgroup.BlockIO) uint64 { return b.Bytes })},
	{"container_fs_reads_total", "Cumulative count of reads completed on this device.", counter, deviceLabel,
		fromBlockIO("Read", func(b cgroup.BlockIO) uint64 { return b.IOs })},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written to this device.", counter, deviceLabel,
		fromBlockIO("Write", func(b cgroup.BlockIO) uint64 { return b.Bytes })},
	{"container_fs_writes_total", "Cumulative count of writes completed on this device.", counter, deviceLabel,
		fromBlockIO("Write", func(b cgroup.BlockIO) uint64 { return b.IOs })},
	{"container_blkio_device_usage_total", "Cumulative count of bytes of block I/O by device and operation.", counter, blkioLabels,
		blkioUsage},
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
		labels := append(append([]string(nil), baseLabels...), m.labels...)
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
	base := []string{p.Config.Name, p.Config.Namespace, c.Config.Name, c.ID, c.ImageRef}
	out := &runtime.ContainerMetrics{ContainerId: c.ID, Metrics: []*runtime.Metric{
		{Name: lastSeen, Timestamp: ts, MetricType: gauge, LabelValues: base, Value: u64(uint64(st.At.Unix()))},
	}}
	for _, m := range containerMetrics {
		for _, v := range m.values(&st) {
			labels := base
			if len(v.labels) > 0 {
				labels = append(append(make([]string, 0, len(base)+len(v.labels)), base...), v.labels...)
			}
			out.Metrics = append(out.Metrics, &runtime.Metric{Name: m.name, Timestamp: ts, MetricType: m.typ, LabelValues: labels, Value: u64(v.value)})
		}
	}
	return out
}
