package sandbox

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/cradle-runtime/cradle/pkg/sandbox/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// UpdatePodResources resizes a running pod in place (kubelet's
// UpdatePodSandboxResources, for pod-level resources and in-place resize):
// res is the sum of its containers' resources, overhead the handler's.
// A pod cgroup cradle made (no cgroup_parent) is resized to res plus
// overhead; one kubelet made it resizes itself, and this records the new
// figures and tells NRI plugins. A sandbox with bounds fixed when it
// started (a vm pod's VM; Backend.FitPodResources says so) keeps them:
// resources beyond them are InvalidArgument, those within are accepted
// (the limits inside the guest are its containers', which kubelet resizes
// one by one; its host cgroup holds the VMM, whose size does not change).
func (m *Manager) UpdatePodResources(ctx context.Context, id string, res, overhead *ctrconfig.Resources) error {
	if res == nil {
		return fmt.Errorf("UpdatePodSandboxResources needs Linux resources: %w", errdefs.ErrInvalidArgument)
	}
	e, err := m.entry(id)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	pod := e.pod
	if pod.State != PodReady {
		return fmt.Errorf("pod sandbox %s is %s: %w", pod.ID, pod.State, errdefs.ErrFailedPrecondition)
	}
	host, err := m.hostFor(pod)
	if err != nil {
		return err
	}
	next := &specs.LinuxResources{}
	dropped, err := oci.UpdateResources(next, sumResources(res, overhead), host)
	if err != nil {
		return err
	}
	b, err := m.backendOf(pod)
	if err != nil {
		return err
	}
	where, err := b.FitPodResources(pod, next)
	if err != nil {
		return fmt.Errorf("resize pod sandbox %s: %w", pod.ID, err)
	}
	if err := m.opts.NRI.UpdatePod(ctx, pod, res, overhead); err != nil {
		return fmt.Errorf("resize pod sandbox %s: %w", pod.ID, err)
	}
	m.logDropped(ctx, pod, dropped)
	if where == ResizeWithinSandbox {
		// Its config keeps the resources the sandbox was sized from (a
		// VM's, which vmbox.Size reads): they stay its bounds.
		m.opts.NRI.PostUpdatePod(ctx, pod)
		m.log.InfoContext(ctx, "pod sandbox resized within its bounds", "pod", pod.ID, "memory_limit", res.MemoryLimit, "cpu_quota", res.CPUQuota)
		return nil
	}
	if _, owned, err := m.podCgroup(pod); err == nil && owned && pod.Cgroup != "" {
		if err := m.opts.Cgroups.Update(pod.Cgroup, next); err != nil {
			return fmt.Errorf("resize the cgroup of pod sandbox %s: %w", pod.ID, err)
		}
	}
	// Snapshots of the pod (copies of it) keep the resources they had.
	pod.Config.Resources, pod.Config.Overhead = res.Clone(), overhead.Clone()
	if err := m.save(pod); err != nil {
		return err
	}
	m.opts.NRI.PostUpdatePod(ctx, pod)
	m.log.InfoContext(ctx, "pod sandbox resized", "pod", pod.ID, "memory_limit", res.MemoryLimit, "cpu_quota", res.CPUQuota, "cpu_shares", res.CPUShares)
	return nil
}

// sumResources is a pod's resources with its overhead added: the limits
// and weights its cgroup holds.
func sumResources(res, overhead *ctrconfig.Resources) *ctrconfig.Resources {
	out := res.Clone()
	if overhead == nil {
		return out
	}
	if out.MemoryLimit > 0 && overhead.MemoryLimit > 0 {
		out.MemoryLimit += overhead.MemoryLimit
	}
	if out.CPUShares > 0 {
		out.CPUShares += overhead.CPUShares
	}
	if out.CPUQuota > 0 && overhead.CPUQuota > 0 && out.CPUPeriod == overhead.CPUPeriod {
		out.CPUQuota += overhead.CPUQuota
	}
	return out
}
