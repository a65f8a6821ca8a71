package oci

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// unifiedSwapMax is the cgroup v2 file that, given in the unified map,
// overrides the swap limit derived from the memory limit.
const unifiedSwapMax = "memory.swap.max"

// resources sets the cgroup limits, the pids limit and oom_score_adj.
func (b *builder) resources(context.Context) error {
	r := b.in.Config.Resources
	dropped, err := UpdateResources(b.spec.Linux.Resources, r, b.in.Host)
	if err != nil {
		return err
	}
	b.dropped = append(b.dropped, dropped...)
	if b.opts.pidsLimit != 0 {
		limit := b.opts.pidsLimit
		if b.in.Host.can("pids") {
			b.spec.Linux.Resources.Pids = &specs.LinuxPids{Limit: &limit}
		} else {
			b.dropped = append(b.dropped, fmt.Sprintf("pids limit %d (no pids controller for the pod's cgroup)", limit))
		}
	}
	if r == nil {
		return nil
	}
	adj, warning, err := oomScoreAdj(r.OOMScoreAdj, b.in.Host.MinOOMScoreAdj)
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

// UpdateResources applies a container's resources over a container's current ones, as
// UpdateContainerResources does: zero fields keep the current values,
// the unified map is merged, device rules and pids are kept. oom_score_adj
// cannot change after creation and is ignored.
//
// Resources are checked against what the container's cgroup can enforce
// (Host.Controllers, Host.HugePageSizes). What kubelet sets on every
// container whatever the pod asks (a hugepage limit of 0 for each page
// size the node has, CPU shares and period) is dropped where the host
// cannot apply it, and returned in dropped for the caller to log; what
// the pod asked for (a hugepage, memory, CPU quota or cpuset limit, a
// unified key) and cannot have is InvalidArgument.
func UpdateResources(res *specs.LinuxResources, r *ctrconfig.Resources, host Host) (dropped []string, _ error) {
	if res == nil {
		return nil, fmt.Errorf("no resources to update: %w", errdefs.ErrInvalidArgument)
	}
	if r == nil {
		return nil, nil
	}
	if err := checkResources(r, host); err != nil {
		return nil, err
	}
	if host.can("cpu") {
		applyCPU(res, r)
	} else if r.CPUShares != 0 || r.CPUPeriod != 0 {
		dropped = append(dropped, "cpu shares and period (no cpu controller for the pod's cgroup)")
		applyCPU(res, &ctrconfig.Resources{CpusetCPUs: r.CpusetCPUs, CpusetMems: r.CpusetMems})
	}
	applyMemory(res, r, host)
	if swap := r.MemorySwapLimit; swap != 0 && !host.SwapAccounting {
		dropped = append(dropped, fmt.Sprintf("swap limit %d (the memory controller accounts no swap)", swap))
	}
	for _, h := range r.HugepageLimits {
		if !host.hugepages(h.PageSize) {
			dropped = append(dropped, fmt.Sprintf("hugepage limit %s=%d (%s)", h.PageSize, h.Limit, host.hugepageProblem(h.PageSize)))
			continue
		}
		res.HugepageLimits = setHugepageLimit(res.HugepageLimits, h.PageSize, h.Limit)
	}
	if len(r.Unified) > 0 {
		if res.Unified == nil {
			res.Unified = make(map[string]string, len(r.Unified))
		}
		maps.Copy(res.Unified, r.Unified)
	}
	return dropped, nil
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
func checkResources(r *ctrconfig.Resources, host Host) error {
	q, p := r.CPUQuota, r.CPUPeriod
	switch {
	case p < 0 || r.CPUShares < 0:
		return fmt.Errorf("negative cpu period or shares: %w", errdefs.ErrInvalidArgument)
	case q < -1:
		return fmt.Errorf("cpu_quota %d: a quota is -1 (unlimited), 0 (not set) or at least %d µs: %w", q, minCFSQuota, errdefs.ErrInvalidArgument)
	case q > 0 && q < minCFSQuota:
		return fmt.Errorf("cpu_quota %d µs is below the kernel's minimum of %d µs: %w", q, minCFSQuota, errdefs.ErrInvalidArgument)
	case p != 0 && (p < minCFSQuota || p > maxCFSPeriod):
		return fmt.Errorf("cpu_period %d µs is outside the kernel's [%d, %d]: %w", p, minCFSQuota, maxCFSPeriod, errdefs.ErrInvalidArgument)
	case r.MemoryLimit < 0 || r.MemorySwapLimit < 0:
		return fmt.Errorf("negative memory limit: %w", errdefs.ErrInvalidArgument)
	case len(r.Unified) > 0 && !host.CgroupV2:
		return fmt.Errorf("unified cgroup resources on a cgroup v1 host: %w", errdefs.ErrInvalidArgument)
	case !host.SwapAccounting && r.MemorySwapLimit != 0 && r.MemorySwapLimit != r.MemoryLimit:
		// kubelet's default is swap = memory (no swap); more is asked for.
		return fmt.Errorf("a swap allowance (swap limit %d over memory limit %d) on a node whose memory controller accounts no swap: %w",
			r.MemorySwapLimit, r.MemoryLimit, errdefs.ErrInvalidArgument)
	}
	for _, h := range r.HugepageLimits {
		switch {
		case h.PageSize == "":
			return fmt.Errorf("hugepage limit without a page size: %w", errdefs.ErrInvalidArgument)
		case h.Limit != 0 && !host.hugepages(h.PageSize):
			return fmt.Errorf("hugepage limit %s=%d cannot be enforced on this node (%s): %w",
				h.PageSize, h.Limit, host.hugepageProblem(h.PageSize), errdefs.ErrInvalidArgument)
		}
	}
	return checkControllers(r, host)
}

// checkControllers refuses limits the pod asked for whose controller the
// container's cgroup lacks.
func checkControllers(r *ctrconfig.Resources, host Host) error {
	need := map[string]bool{
		"memory": r.MemoryLimit != 0,
		"cpu":    r.CPUQuota > 0,
		"cpuset": r.CpusetCPUs != "" || r.CpusetMems != "",
	}
	for key := range r.Unified {
		ctrl, _, _ := strings.Cut(key, ".")
		if ctrl != "cgroup" { // cgroup.* files are the core's, always there
			need[ctrl] = true
		}
	}
	for _, ctrl := range slices.Sorted(maps.Keys(need)) {
		if need[ctrl] && !host.can(ctrl) {
			return fmt.Errorf("the %s controller is not available to the pod's cgroup on this node, so its limits cannot be enforced: %w",
				ctrl, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// can says whether the container's cgroup can hold the controller's limits.
func (h Host) can(controller string) bool {
	return h.Controllers == nil || h.Controllers[controller]
}

// hugepages says whether limits for this huge page size can be enforced.
func (h Host) hugepages(size string) bool {
	return h.Controllers == nil || h.can("hugetlb") && slices.Contains(h.HugePageSizes, size)
}

func (h Host) hugepageProblem(size string) string {
	if !h.can("hugetlb") {
		return "no hugetlb controller for the pod's cgroup"
	}
	if !slices.Contains(h.HugePageSizes, size) {
		return fmt.Sprintf("the kernel offers no %s pages", size)
	}
	return ""
}

func applyCPU(res *specs.LinuxResources, r *ctrconfig.Resources) {
	if res.CPU == nil {
		res.CPU = &specs.LinuxCPU{}
	}
	c := res.CPU
	if p := uint64(r.CPUPeriod); p != 0 {
		c.Period = &p
	}
	if q := r.CPUQuota; q != 0 {
		c.Quota = &q
	}
	if s := uint64(r.CPUShares); s != 0 {
		c.Shares = &s
	}
	if r.CpusetCPUs != "" {
		c.Cpus = r.CpusetCPUs
	}
	if r.CpusetMems != "" {
		c.Mems = r.CpusetMems
	}
	if *c == (specs.LinuxCPU{}) {
		res.CPU = nil
	}
}

// applyMemory sets the memory limit and, where swap is accounted, a swap
// limit equal to it (no swap) unless kubelet asked for swap explicitly or
// through memory.swap.max.
func applyMemory(res *specs.LinuxResources, r *ctrconfig.Resources, host Host) {
	limit, swap := r.MemoryLimit, r.MemorySwapLimit
	if limit == 0 && swap == 0 {
		return
	}
	if res.Memory == nil {
		res.Memory = &specs.LinuxMemory{}
	}
	if limit != 0 {
		res.Memory.Limit = &limit
	}
	_, unifiedSwap := r.Unified[unifiedSwapMax]
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
