package cri

import (
	"context"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/cgroup"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/google/go-cmp/cmp"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func testPodStats() sandbox.PodStats {
	at := time.Unix(100, 0)
	cg := &cgroup.Stats{
		CPU: cgroup.CPUStats{UsageNanos: 3e9, Shares: 1024, PeriodMicros: 100000},
		Memory: cgroup.MemoryStats{Usage: 100, WorkingSet: 60, RSS: 50, Limit: 1000, SwapUsage: 5, KernelUsage: 8,
			PageFaults: 40, MajorPageFaults: 4, OwnPageFaults: 30, OwnMajorPageFaults: 3},
		Pids: 3, PidsLimit: 64,
		BlockIO: []cgroup.BlockIO{
			{Device: "/dev/vda", Major: 254, Op: "Read", Bytes: 4096, IOs: 1},
			{Device: "/dev/vda", Major: 254, Op: "Write", Bytes: 8192, IOs: 2},
			{Major: 7, Minor: 1, Op: "Write", Bytes: 512, IOs: 1},
		},
		PSI: cgroup.PSI{CPU: &cgroup.Pressure{Some: cgroup.PressureData{Avg10: 1.5, TotalNanos: 7}}},
	}
	rate := uint64(5e8)
	c := sandbox.Container{ID: "c1", ImageRef: "busybox:1", StartedAt: at,
		Config: ctrconfig.Container{Name: "app"}}
	return sandbox.PodStats{
		Pod: sandbox.Pod{ID: "p1", Config: sandbox.PodConfig{Name: "web", Namespace: "ns", UID: "u"}},
		At:  at, Cgroup: cg, NanoCores: &rate, Processes: 2,
		Network: []sandbox.InterfaceStats{{Name: "lo", RxBytes: 9}, {Name: "eth1", RxBytes: 1}, {Name: "eth0", RxBytes: 2, TxPackets: 3}},
		Containers: []sandbox.ContainerStats{{Container: c, At: at, Cgroup: cg, NanoCores: &rate,
			WritableLayer: &sandbox.FsUsage{Mountpoint: "/snap", UsedBytes: 4096, Inodes: 3, CapacityBytes: 1 << 30, InodesFree: 99},
			Processes:     &sandbox.ProcessCounts{Processes: 2, Threads: 5, FileDescriptors: 9, Sockets: 1}}},
	}
}

func TestToPodStats(t *testing.T) {
	got := toPodStats(testPodStats())
	l := got.GetLinux()
	if l.GetNetwork().GetDefaultInterface().GetName() != "eth0" || len(l.GetNetwork().GetInterfaces()) != 2 {
		t.Errorf("network = %v: want eth0 as default and lo left out", l.GetNetwork())
	}
	if l.GetProcess().GetProcessCount().GetValue() != 2 || l.GetCpu().GetUsageNanoCores().GetValue() != 5e8 {
		t.Errorf("process %v cpu %v", l.GetProcess(), l.GetCpu())
	}
	cs := l.GetContainers()[0]
	if diff := cmp.Diff([]uint64{60, 100, 50, 940, 5, 4096, 3}, []uint64{
		cs.GetMemory().GetWorkingSetBytes().GetValue(), cs.GetMemory().GetUsageBytes().GetValue(),
		cs.GetMemory().GetRssBytes().GetValue(), cs.GetMemory().GetAvailableBytes().GetValue(),
		cs.GetSwap().GetSwapUsageBytes().GetValue(), cs.GetWritableLayer().GetUsedBytes().GetValue(),
		cs.GetWritableLayer().GetInodesUsed().GetValue(),
	}); diff != "" {
		t.Errorf("container figures (-want +got):\n%s", diff)
	}
	if cs.GetCpu().GetPsi().GetSome().GetAvg10() != 1.5 || cs.GetMemory().GetPsi() != nil || cs.GetIo() != nil {
		t.Errorf("PSI: cpu %v memory %v io %v", cs.GetCpu().GetPsi(), cs.GetMemory().GetPsi(), cs.GetIo())
	}
	if cs.GetSwap().GetSwapAvailableBytes() != nil {
		t.Error("swap available reported without a swap limit")
	}
}

func TestPodMetricsAreDescribed(t *testing.T) {
	s := &runtimeServer{}
	resp, err := s.ListMetricDescriptors(context.Background(), &runtime.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	described := map[string]int{}
	for _, d := range resp.GetDescriptors() {
		if _, dup := described[d.GetName()]; dup {
			t.Errorf("%s described twice", d.GetName())
		}
		described[d.GetName()] = len(d.GetLabelKeys())
	}
	pm := toPodMetrics(testPodStats())
	all := pm.GetMetrics()
	for _, cm := range pm.GetContainerMetrics() {
		all = append(all, cm.GetMetrics()...)
	}
	values := map[string]uint64{}
	for _, m := range all {
		n, ok := described[m.GetName()]
		if !ok || n != len(m.GetLabelValues()) {
			t.Errorf("%s: described %v with %d labels, sent with %d", m.GetName(), ok, n, len(m.GetLabelValues()))
		}
		values[m.GetName()+"/"+m.GetLabelValues()[len(m.GetLabelValues())-1]] = m.GetValue().GetValue()
	}
	for k, want := range map[string]uint64{
		"container_cpu_usage_seconds_total/busybox:1":   3,
		"container_memory_working_set_bytes/busybox:1":  60,
		"container_network_receive_bytes_total/eth0":    2,
		"container_network_transmit_packets_total/eth0": 3,
		"container_fs_usage_bytes//snap":                4096,
		"container_processes/busybox:1":                 2,
		"container_start_time_seconds/busybox:1":        100,
	} {
		if values[k] != want {
			t.Errorf("%s = %d, want %d", k, values[k], want)
		}
	}
	if _, ok := values["container_network_receive_bytes_total/lo"]; ok {
		t.Error("loopback reported")
	}
}

func TestSendChunks(t *testing.T) {
	for _, n := range []int{0, 1, streamChunk, streamChunk + 1, 3*streamChunk - 1} {
		items := make([]int, n)
		for i := range items {
			items[i] = i
		}
		var got []int
		calls := 0
		err := sendChunks(items, func(c []int) error {
			if len(c) == 0 || len(c) > streamChunk {
				t.Errorf("chunk of %d", len(c))
			}
			calls++
			got = append(got, c...)
			return nil
		})
		if err != nil || len(got) != n || calls != (n+streamChunk-1)/streamChunk {
			t.Errorf("n=%d: %d items in %d calls, %v", n, len(got), calls, err)
		}
	}
}

func TestToContainerEvent(t *testing.T) {
	st := testPodStats()
	ev := toContainerEvent(sandbox.Event{Type: sandbox.EventStopped, ID: "c1", At: time.Unix(5, 0), Pod: st.Pod,
		Containers: []sandbox.Container{st.Containers[0].Container}})
	if ev.GetContainerEventType() != runtime.ContainerEventType_CONTAINER_STOPPED_EVENT || ev.GetCreatedAt() != 5e9 ||
		ev.GetPodSandboxStatus().GetMetadata().GetUid() != "u" || len(ev.GetContainersStatuses()) != 1 {
		t.Errorf("event = %v", ev)
	}
}

// A pod whose network is being taken down (only loopback left, or no
// interface at all) reports no network: kubelet v1.34 dereferences the
// default interface of any network usage it is given, and crashed on one
// without it.
func TestToPodStatsNetworkWithoutInterface(t *testing.T) {
	for _, ifs := range [][]sandbox.InterfaceStats{{{Name: "lo", RxBytes: 9}}, {}} {
		st := testPodStats()
		st.Network = ifs
		if n := toPodStats(st).GetLinux().GetNetwork(); n != nil {
			t.Errorf("interfaces %v: network = %v, want none", ifs, n)
		}
	}
}
