package sandbox

import (
	"context"
	"log/slog"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/cgroup"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// HostCgroups is the cgroup part of a Backend whose containers' cgroups
// are the host's, below their pod's (nsbox): it reads and updates them
// through the host's Cgroups, at the container's CgroupPath. A backend
// embeds it.
type HostCgroups struct {
	Cgroups Cgroups
	Log     *slog.Logger
}

// FitPodResources takes any resources: the pod's host cgroup holds them.
func (HostCgroups) FitPodResources(*Pod, *specs.LinuxResources) (PodResize, error) {
	return ResizeHostCgroup, nil
}

// ContainerControllers are those the pod's cgroup can give; a pod without
// one (none recorded) limits nothing: every one.
func (h HostCgroups) ContainerControllers(pod *Pod) (map[string]bool, error) {
	if pod.Cgroup == "" {
		return nil, nil
	}
	return h.Cgroups.Controllers(pod.Cgroup)
}

// ContainerCgroupStats reads c's host cgroup, and counts its processes.
func (h HostCgroups) ContainerCgroupStats(ctx context.Context, _ *Pod, c *Container) (cgroup.Stats, *ProcessCounts, error) {
	cg, err := h.Cgroups.Stats(c.CgroupPath)
	if err != nil {
		return cg, nil, err
	}
	pids, err := h.Cgroups.Processes(c.CgroupPath)
	if err != nil {
		if !errdefs.IsNotFound(err) {
			h.Log.WarnContext(ctx, "container processes", "container", c.ID, "error", err)
		}
		return cg, nil, nil
	}
	n := countProcesses(pids)
	return cg, &n, nil
}

// UpdateContainerCgroup applies res to c's host cgroup.
func (h HostCgroups) UpdateContainerCgroup(_ context.Context, _ *Pod, c *Container, res *specs.LinuxResources) error {
	return h.Cgroups.Update(c.CgroupPath, res)
}
