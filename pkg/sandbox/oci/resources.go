package oci

import (
	"context"
	"fmt"
	"maps"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// unifiedSwapMax is the cgroup v2 file that, given in the unified map,
// overrides the swap limit derived from the memory limit.
const unifiedSwapMax = "memory.swap.max"

// resources sets the cgroup limits, the pids limit and oom_score_adj.
func (b *builder) resources(context.Context) error {
	r := b.in.Config.GetLinux().GetResources()
	if err := UpdateResources(b.spec.Linux.Resources, r, b.in.Host); err != nil {
		return err
	}
	if b.opts.pidsLimit != 0 {
		limit := b.opts.pidsLimit
		b.spec.Linux.Resources.Pids = &specs.LinuxPids{Limit: &limit}
	}
	if r == nil {
		return nil
	}
	adj, warning, err := oomScoreAdj(r.GetOomScoreAdj(), b.in.Host.MinOOMScoreAdj)
	if err != nil {
		return err
	}
	if warning != "" {
		b.warnf("%s", warning)
	}
	b.spec.Process.OOMScoreAdj = &adj
	return nil
}

// oomScoreAdj checks the requested value and raises it to the host's floor.
func oomScoreAdj(want int64, floor int) (int, string, error) {
	if want < -1000 || want > 1000 {
		return 0, "", fmt.Errorf("oom_score_adj %d is outside [-1000, 1000]: %w", want, errdefs.ErrInvalidArgument)
	}
	if int(want) < floor {
		return floor, fmt.Sprintf("oom_score_adj %d raised to %d: the runtime may not set a lower value", want, floor), nil
	}
	return int(want), "", nil
}

// UpdateResources applies CRI resources over a container's current ones, as
// UpdateContainerResources does: zero CRI fields keep the current values,
// the unified map is merged, device rules and pids are kept. oom_score_adj
// cannot change after creation and is ignored.
func UpdateResources(res *specs.LinuxResources, r *runtime.LinuxContainerResources, host Host) error {
	if res == nil {
		return fmt.Errorf("no resources to update: %w", errdefs.ErrInvalidArgument)
	}
	if r == nil {
		return nil
	}
	if err := checkResources(r, host); err != nil {
		return err
	}
	applyCPU(res, r)
	applyMemory(res, r, host)
	for _, h := range r.GetHugepageLimits() {
		res.HugepageLimits = setHugepageLimit(res.HugepageLimits, h.GetPageSize(), h.GetLimit())
	}
	if len(r.GetUnified()) > 0 {
		if res.Unified == nil {
			res.Unified = make(map[string]string, len(r.GetUnified()))
		}
		maps.Copy(res.Unified, r.GetUnified())
	}
	return nil
}

// The CFS bandwidth bounds the kernel accepts (kernel/sched/core.c), in µs.
const (
	minCFSQuota  = 1000    // 1 ms, also the smallest period
	maxCFSPeriod = 1000000 // 1 s
)

// checkResources refuses values the kernel would refuse, or would read as
// something else than asked. cpu_quota: 0 is "not set" (what kubelet sends
// for a container without a CPU limit); -1 is "unlimited" (what kubelet
// sends to lift the quota of a container with exclusive CPUs, and what
// runc and crun write as cfs_quota_us -1 on v1 and cpu.max "max" on v2);
// any other negative value used to reach the kernel, which reads every
// negative quota as unlimited: -5 silently lifted the limit.
func checkResources(r *runtime.LinuxContainerResources, host Host) error {
	q, p := r.GetCpuQuota(), r.GetCpuPeriod()
	switch {
	case p < 0 || r.GetCpuShares() < 0:
		return fmt.Errorf("negative cpu period or shares: %w", errdefs.ErrInvalidArgument)
	case q < -1:
		return fmt.Errorf("cpu_quota %d: a quota is -1 (unlimited), 0 (not set) or at least %d µs: %w", q, minCFSQuota, errdefs.ErrInvalidArgument)
	case q > 0 && q < minCFSQuota:
		return fmt.Errorf("cpu_quota %d µs is below the kernel's minimum of %d µs: %w", q, minCFSQuota, errdefs.ErrInvalidArgument)
	case p != 0 && (p < minCFSQuota || p > maxCFSPeriod):
		return fmt.Errorf("cpu_period %d µs is outside the kernel's [%d, %d]: %w", p, minCFSQuota, maxCFSPeriod, errdefs.ErrInvalidArgument)
	case r.GetMemoryLimitInBytes() < 0 || r.GetMemorySwapLimitInBytes() < 0:
		return fmt.Errorf("negative memory limit: %w", errdefs.ErrInvalidArgument)
	case len(r.GetUnified()) > 0 && !host.CgroupV2:
		return fmt.Errorf("unified cgroup resources on a cgroup v1 host: %w", errdefs.ErrInvalidArgument)
	}
	for _, h := range r.GetHugepageLimits() {
		if h.GetPageSize() == "" {
			return fmt.Errorf("hugepage limit without a page size: %w", errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func applyCPU(res *specs.LinuxResources, r *runtime.LinuxContainerResources) {
	if res.CPU == nil {
		res.CPU = &specs.LinuxCPU{}
	}
	c := res.CPU
	if p := uint64(r.GetCpuPeriod()); p != 0 {
		c.Period = &p
	}
	if q := r.GetCpuQuota(); q != 0 {
		c.Quota = &q
	}
	if s := uint64(r.GetCpuShares()); s != 0 {
		c.Shares = &s
	}
	if r.GetCpusetCpus() != "" {
		c.Cpus = r.GetCpusetCpus()
	}
	if r.GetCpusetMems() != "" {
		c.Mems = r.GetCpusetMems()
	}
	if *c == (specs.LinuxCPU{}) {
		res.CPU = nil
	}
}

// applyMemory sets the memory limit and, where swap is accounted, a swap
// limit equal to it (no swap) unless kubelet asked for swap explicitly or
// through memory.swap.max.
func applyMemory(res *specs.LinuxResources, r *runtime.LinuxContainerResources, host Host) {
	limit, swap := r.GetMemoryLimitInBytes(), r.GetMemorySwapLimitInBytes()
	if limit == 0 && swap == 0 {
		return
	}
	if res.Memory == nil {
		res.Memory = &specs.LinuxMemory{}
	}
	if limit != 0 {
		res.Memory.Limit = &limit
	}
	_, unifiedSwap := r.GetUnified()[unifiedSwapMax]
	switch {
	case !host.SwapAccounting:
	case swap != 0:
		res.Memory.Swap = &swap
	case limit != 0 && !unifiedSwap:
		res.Memory.Swap = &limit
	}
}

// setHugepageLimit replaces the limit for a page size or adds one.
func setHugepageLimit(limits []specs.LinuxHugepageLimit, size string, limit uint64) []specs.LinuxHugepageLimit {
	for i := range limits {
		if limits[i].Pagesize == size {
			limits[i].Limit = limit
			return limits
		}
	}
	return append(limits, specs.LinuxHugepageLimit{Pagesize: size, Limit: limit})
}
