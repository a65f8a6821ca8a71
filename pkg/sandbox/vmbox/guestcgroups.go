package vmbox

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/agent/api"
	"github.com/cradle-runtime/cradle/pkg/cgroup"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ContainerCgroupStats reads the container's cgroup in the guest, and
// the guest's counts of its processes.
func (b *Backend) ContainerCgroupStats(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) (cgroup.Stats, *sandbox.ProcessCounts, error) {
	var resp *api.StatsResponse
	err := b.call(ctx, pod, func(s api.AgentService) (err error) {
		resp, err = s.Stats(ctx, &api.StatsRequest{Ids: []string{c.ID}})
		return err
	})
	if err != nil {
		return cgroup.Stats{}, nil, fmt.Errorf("stats from the guest: %w", err)
	}
	for _, cs := range resp.GetContainers() {
		if cs.GetId() != c.ID {
			continue
		}
		var st cgroup.Stats
		if err := json.Unmarshal(cs.GetCgroup(), &st); err != nil {
			return cgroup.Stats{}, nil, fmt.Errorf("stats from the guest: %w", err)
		}
		return st, &sandbox.ProcessCounts{Processes: cs.GetProcesses(), Threads: cs.GetThreads(),
			FileDescriptors: cs.GetFileDescriptors()}, nil
	}
	return cgroup.Stats{}, nil, fmt.Errorf("container %s in the guest: %w", c.ID, errdefs.ErrNotFound)
}

// UpdateContainerCgroup applies res in the guest, within the VM's size.
func (b *Backend) UpdateContainerCgroup(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container, res *specs.LinuxResources) error {
	if err := b.checkFits(pod, &specs.Linux{Resources: res}); err != nil {
		return err
	}
	data, err := json.Marshal(GuestResources(res))
	if err != nil {
		return err
	}
	return b.call(ctx, pod, func(s api.AgentService) error {
		_, err := s.UpdateContainer(ctx, &api.UpdateContainerRequest{Id: c.ID, Resources: data})
		return err
	})
}

// FitPodResources refuses pod resources beyond the pod's VM: its memory
// and vCPUs are fixed when it boots, and the pod shrinks and grows within
// them.
func (b *Backend) FitPodResources(pod *sandbox.Pod, res *specs.LinuxResources) (sandbox.PodResize, error) {
	if err := b.checkFits(pod, &specs.Linux{Resources: res}); err != nil {
		return sandbox.ResizeWithinSandbox, err
	}
	return sandbox.ResizeWithinSandbox, nil
}

// ContainerControllers says which controllers hold limits: every one, for
// the guest's cgroups are the containers' own.
func (b *Backend) ContainerControllers(*sandbox.Pod) (map[string]bool, error) { return nil, nil }

// checkFits refuses limits a container could never have in the pod's VM:
// more memory than the VM has, or a CPU quota of more than its vCPUs.
func (b *Backend) checkFits(pod *sandbox.Pod, l *specs.Linux) error {
	if l == nil || l.Resources == nil {
		return nil
	}
	vcpus, memMiB := b.size(pod)
	r := l.Resources
	if r.Memory != nil && r.Memory.Limit != nil && *r.Memory.Limit > int64(memMiB)<<20 {
		return fmt.Errorf("memory limit %d bytes is more than the pod's VM has (%d MiB): %w",
			*r.Memory.Limit, memMiB, errdefs.ErrInvalidArgument)
	}
	if r.CPU != nil && r.CPU.Quota != nil && *r.CPU.Quota > 0 && r.CPU.Period != nil && *r.CPU.Period > 0 &&
		*r.CPU.Quota > int64(*r.CPU.Period)*int64(vcpus) {
		return fmt.Errorf("CPU limit of %d/%d is more than the pod's VM has (%d vCPUs): %w",
			*r.CPU.Quota, *r.CPU.Period, vcpus, errdefs.ErrInvalidArgument)
	}
	return nil
}
