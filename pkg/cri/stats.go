package cri

import (
	"context"

	"github.com/cradle-runtime/cradle/pkg/cgroup"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// defaultInterface is the pod interface kubelet reports as the pod's
// network (the built-in network and CNI both name it so).
const defaultInterface = "eth0"

func (s *runtimeServer) ContainerStats(ctx context.Context, req *runtime.ContainerStatsRequest) (*runtime.ContainerStatsResponse, error) {
	st, err := s.deps.Pods.ContainerStats(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &runtime.ContainerStatsResponse{Stats: toContainerStats(st)}, nil
}

func (s *runtimeServer) ListContainerStats(ctx context.Context, req *runtime.ListContainerStatsRequest) (*runtime.ListContainerStatsResponse, error) {
	return &runtime.ListContainerStatsResponse{Stats: s.listContainerStats(ctx, req.GetFilter())}, nil
}

func (s *runtimeServer) listContainerStats(ctx context.Context, f *runtime.ContainerStatsFilter) []*runtime.ContainerStats {
	sts := s.deps.Pods.ListContainerStats(ctx, sandbox.ContainerFilter{
		ID: f.GetId(), PodID: f.GetPodSandboxId(), Labels: f.GetLabelSelector(),
	})
	out := make([]*runtime.ContainerStats, 0, len(sts))
	for _, st := range sts {
		out = append(out, toContainerStats(st))
	}
	return out
}

func (s *runtimeServer) PodSandboxStats(ctx context.Context, req *runtime.PodSandboxStatsRequest) (*runtime.PodSandboxStatsResponse, error) {
	st, err := s.deps.Pods.PodStats(ctx, req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	return &runtime.PodSandboxStatsResponse{Stats: toPodStats(st)}, nil
}

func (s *runtimeServer) ListPodSandboxStats(ctx context.Context, req *runtime.ListPodSandboxStatsRequest) (*runtime.ListPodSandboxStatsResponse, error) {
	return &runtime.ListPodSandboxStatsResponse{Stats: s.listPodStats(ctx, req.GetFilter())}, nil
}

func (s *runtimeServer) listPodStats(ctx context.Context, f *runtime.PodSandboxStatsFilter) []*runtime.PodSandboxStats {
	sts := s.deps.Pods.ListPodStats(ctx, sandbox.PodFilter{ID: f.GetId(), Labels: f.GetLabelSelector()})
	out := make([]*runtime.PodSandboxStats, 0, len(sts))
	for _, st := range sts {
		out = append(out, toPodStats(st))
	}
	return out
}

func toContainerStats(st sandbox.ContainerStats) *runtime.ContainerStats {
	c, ts := st.Container, st.At.UnixNano()
	out := &runtime.ContainerStats{Attributes: &runtime.ContainerAttributes{
		Id: c.ID, Metadata: containerMetadata(c), Labels: c.Config.Labels, Annotations: c.Config.Annotations,
	}}
	if cg := st.Cgroup; cg != nil {
		out.Cpu = toCPUUsage(ts, cg, st.NanoCores)
		out.Memory = toMemoryUsage(ts, cg)
		out.Swap = &runtime.SwapUsage{Timestamp: ts, SwapUsageBytes: u64(cg.Memory.SwapUsage)}
		if cg.Memory.SwapLimit != 0 {
			out.Swap.SwapAvailableBytes = u64(sub(cg.Memory.SwapLimit, cg.Memory.SwapUsage))
		}
		out.Io = toIOUsage(ts, cg)
	}
	if wl := st.WritableLayer; wl != nil {
		out.WritableLayer = &runtime.FilesystemUsage{
			Timestamp: ts, FsId: &runtime.FilesystemIdentifier{Mountpoint: wl.Mountpoint},
			UsedBytes: u64(wl.UsedBytes), InodesUsed: u64(wl.Inodes),
		}
	}
	return out
}

func toPodStats(st sandbox.PodStats) *runtime.PodSandboxStats {
	p, ts := st.Pod, st.At.UnixNano()
	linux := &runtime.LinuxPodSandboxStats{Containers: make([]*runtime.ContainerStats, 0, len(st.Containers))}
	if cg := st.Cgroup; cg != nil {
		linux.Cpu = toCPUUsage(ts, cg, st.NanoCores)
		linux.Memory = toMemoryUsage(ts, cg)
		linux.Process = &runtime.ProcessUsage{Timestamp: ts, ProcessCount: u64(st.Processes)}
		linux.Io = toIOUsage(ts, cg)
	}
	if st.Network != nil {
		linux.Network = toNetworkUsage(ts, st.Network)
	}
	for _, c := range st.Containers {
		linux.Containers = append(linux.Containers, toContainerStats(c))
	}
	return &runtime.PodSandboxStats{
		Attributes: &runtime.PodSandboxAttributes{
			Id: p.ID, Metadata: podMetadata(p), Labels: p.Config.Labels, Annotations: p.Config.Annotations,
		},
		Linux: linux,
	}
}

func toCPUUsage(ts int64, cg *cgroup.Stats, nanoCores *uint64) *runtime.CpuUsage {
	out := &runtime.CpuUsage{Timestamp: ts, UsageCoreNanoSeconds: u64(cg.CPU.UsageNanos), Psi: toPSI(cg.PSI.CPU)}
	if nanoCores != nil {
		out.UsageNanoCores = u64(*nanoCores)
	}
	return out
}

func toMemoryUsage(ts int64, cg *cgroup.Stats) *runtime.MemoryUsage {
	m := cg.Memory
	out := &runtime.MemoryUsage{
		Timestamp: ts, WorkingSetBytes: u64(m.WorkingSet), UsageBytes: u64(m.Usage), RssBytes: u64(m.RSS),
		PageFaults: u64(m.PageFaults), MajorPageFaults: u64(m.MajorPageFaults), Psi: toPSI(cg.PSI.Memory),
	}
	if m.Limit != 0 {
		out.AvailableBytes = u64(sub(m.Limit, m.WorkingSet))
	}
	return out
}

func toIOUsage(ts int64, cg *cgroup.Stats) *runtime.IoUsage {
	if cg.PSI.IO == nil {
		return nil
	}
	return &runtime.IoUsage{Timestamp: ts, Psi: toPSI(cg.PSI.IO)}
}

func toPSI(p *cgroup.Pressure) *runtime.PsiStats {
	if p == nil {
		return nil
	}
	conv := func(d cgroup.PressureData) *runtime.PsiData {
		return &runtime.PsiData{Total: d.TotalNanos, Avg10: d.Avg10, Avg60: d.Avg60, Avg300: d.Avg300}
	}
	return &runtime.PsiStats{Full: conv(p.Full), Some: conv(p.Some)}
}

// toNetworkUsage reports every interface but loopback; the default one is
// eth0, else the first. With none (a pod whose network is being taken
// down) it reports nothing: a usage without a default interface crashes
// kubelet.
func toNetworkUsage(ts int64, ifs []sandbox.InterfaceStats) *runtime.NetworkUsage {
	out := &runtime.NetworkUsage{Timestamp: ts}
	for _, i := range ifs {
		if i.Name == "lo" {
			continue
		}
		u := &runtime.NetworkInterfaceUsage{
			Name: i.Name, RxBytes: u64(i.RxBytes), RxErrors: u64(i.RxErrors), TxBytes: u64(i.TxBytes), TxErrors: u64(i.TxErrors),
		}
		out.Interfaces = append(out.Interfaces, u)
		if i.Name == defaultInterface || out.DefaultInterface == nil {
			out.DefaultInterface = u
		}
	}
	if out.DefaultInterface == nil {
		return nil
	}
	return out
}

func u64(v uint64) *runtime.UInt64Value { return &runtime.UInt64Value{Value: v} }

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}
