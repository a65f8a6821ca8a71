package nri

import (
	api "github.com/containerd/nri/pkg/api"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// podSandbox is what plugins see of a pod.
func podSandbox(p *sandbox.Pod) *api.PodSandbox {
	out := &api.PodSandbox{
		Id: p.ID, Name: p.Config.Name, Uid: p.Config.UID, Namespace: p.Config.Namespace,
		Labels: p.Config.Labels, Annotations: p.Config.Annotations, RuntimeHandler: p.Handler,
		Ips: p.IPs, Pid: uint32(max(p.Pid, 0)),
		Linux: &api.LinuxPodSandbox{CgroupParent: p.Config.CgroupParent, CgroupsPath: p.Cgroup},
	}
	if p.NetNS != "" {
		out.Linux.Namespaces = append(out.Linux.Namespaces, &api.LinuxNamespace{Type: "network", Path: p.NetNS})
	}
	for kind, path := range p.NS {
		out.Linux.Namespaces = append(out.Linux.Namespaces, &api.LinuxNamespace{Type: kind, Path: path})
	}
	if r := p.Config.Resources; r != nil {
		out.Linux.PodResources = fromResources(r)
	}
	if r := p.Config.Overhead; r != nil {
		out.Linux.PodOverhead = fromResources(r)
	}
	return out
}

// container is what plugins see of a container: from its spec while it
// is created, else from its config and recorded state.
func container(c *sandbox.Container, spec *specs.Spec) *api.Container {
	cfg := c.Config
	out := &api.Container{
		Id: c.ID, PodSandboxId: c.PodID, Name: cfg.Name, State: containerState(c.State),
		Labels: cfg.Labels, Annotations: cfg.Annotations,
		Pid:       uint32(max(c.Pid, 0)),
		CreatedAt: c.CreatedAt.UnixNano(), ExitCode: c.ExitCode,
		StatusReason: c.Reason, StatusMessage: c.Message,
		Linux: &api.LinuxContainer{CgroupsPath: c.CgroupPath},
	}
	if !c.StartedAt.IsZero() {
		out.StartedAt = c.StartedAt.UnixNano()
	}
	if !c.FinishedAt.IsZero() {
		out.FinishedAt = c.FinishedAt.UnixNano()
	}
	if spec == nil {
		out.Args = append(append([]string{}, cfg.Command...), cfg.Args...)
		for _, kv := range cfg.Env {
			out.Env = append(out.Env, kv.Key+"="+kv.Value)
		}
		if c.Resources != nil {
			out.Linux.Resources = api.FromOCILinuxResources(c.Resources, nil)
		}
		return out
	}
	if p := spec.Process; p != nil {
		out.Args, out.Env = p.Args, p.Env
		out.Rlimits = fromOCIRlimits(p.Rlimits)
		if p.OOMScoreAdj != nil {
			out.Linux.OomScoreAdj = api.Int(*p.OOMScoreAdj)
		}
	}
	out.Mounts = api.FromOCIMounts(spec.Mounts)
	out.Hooks = api.FromOCIHooks(spec.Hooks)
	if l := spec.Linux; l != nil {
		out.Linux.Namespaces = api.FromOCILinuxNamespaces(l.Namespaces)
		out.Linux.Devices = api.FromOCILinuxDevices(l.Devices)
		out.Linux.Resources = api.FromOCILinuxResources(l.Resources, spec.Annotations)
		out.Linux.CgroupsPath = l.CgroupsPath
		out.Linux.Sysctl = l.Sysctl
		if l.Seccomp != nil { // the nri module's converter dereferences it
			out.Linux.SeccompPolicy = api.FromOCILinuxSeccomp(l.Seccomp)
		}
	}
	return out
}

func fromOCIRlimits(in []specs.POSIXRlimit) []*api.POSIXRlimit {
	out := make([]*api.POSIXRlimit, 0, len(in))
	for _, r := range in {
		out = append(out, &api.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
	}
	return out
}

func containerState(s sandbox.ContainerState) api.ContainerState {
	switch s {
	case sandbox.ContainerCreated:
		return api.ContainerState_CONTAINER_CREATED
	case sandbox.ContainerRunning:
		return api.ContainerState_CONTAINER_RUNNING
	case sandbox.ContainerExited:
		return api.ContainerState_CONTAINER_STOPPED
	}
	return api.ContainerState_CONTAINER_UNKNOWN
}

// fromResources converts a pod's resources as kubelet gave them.
func fromResources(r *ctrconfig.Resources) *api.LinuxResources {
	out := &api.LinuxResources{
		Cpu: &api.LinuxCPU{
			Shares: api.UInt64(uint64(max(r.CPUShares, 0))),
			Quota:  api.Int64(r.CPUQuota),
			Period: api.UInt64(uint64(max(r.CPUPeriod, 0))),
			Cpus:   r.CpusetCPUs, Mems: r.CpusetMems,
		},
		Memory:  &api.LinuxMemory{Limit: api.Int64(r.MemoryLimit)},
		Unified: r.Unified,
	}
	for _, h := range r.HugepageLimits {
		out.HugepageLimits = append(out.HugepageLimits, &api.HugepageLimit{PageSize: h.PageSize, Limit: h.Limit})
	}
	return out
}

// toResources converts the resources a plugin asks a container to have.
func toResources(r *api.LinuxResources) *ctrconfig.Resources {
	out := &ctrconfig.Resources{
		CPUPeriod:   int64(r.GetCpu().GetPeriod().GetValue()),
		CPUQuota:    r.GetCpu().GetQuota().GetValue(),
		CPUShares:   int64(r.GetCpu().GetShares().GetValue()),
		CpusetCPUs:  r.GetCpu().GetCpus(),
		CpusetMems:  r.GetCpu().GetMems(),
		MemoryLimit: r.GetMemory().GetLimit().GetValue(),
		Unified:     r.GetUnified(),
	}
	if s := r.GetMemory().GetSwap(); s != nil {
		out.MemorySwapLimit = s.GetValue()
	}
	for _, h := range r.GetHugepageLimits() {
		out.HugepageLimits = append(out.HugepageLimits, ctrconfig.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	return out
}
