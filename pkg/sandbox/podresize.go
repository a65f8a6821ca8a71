package sandbox

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
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
func (m *Manager) UpdatePodResources(ctx context.Context, id string, res, overhead *runtime.LinuxContainerResources) error {
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
		m.log.InfoContext(ctx, "pod sandbox resized within its bounds", "pod", pod.ID, "memory_limit", res.GetMemoryLimitInBytes(), "cpu_quota", res.GetCpuQuota())
		return nil
	}
	if _, owned, err := m.podCgroup(pod); err == nil && owned && pod.Cgroup != "" {
		if err := m.opts.Cgroups.Update(pod.Cgroup, next); err != nil {
			return fmt.Errorf("resize the cgroup of pod sandbox %s: %w", pod.ID, err)
		}
	}
	// Copy on write: snapshots of the pod share its config.
	raw := &runtime.PodSandboxConfig{}
	if pod.Config.Raw != nil {
		raw = proto.Clone(pod.Config.Raw).(*runtime.PodSandboxConfig)
	}
	if raw.Linux == nil {
		raw.Linux = &runtime.LinuxPodSandboxConfig{}
	}
	raw.Linux.Resources, raw.Linux.Overhead = res, overhead
	pod.Config.Raw = raw
	if err := m.save(pod); err != nil {
		return err
	}
	m.opts.NRI.PostUpdatePod(ctx, pod)
	m.log.InfoContext(ctx, "pod sandbox resized", "pod", pod.ID, "memory_limit", res.GetMemoryLimitInBytes(), "cpu_quota", res.GetCpuQuota(), "cpu_shares", res.GetCpuShares())
	return nil
}

// sumResources is a pod's resources with its overhead added: the limits
// and weights its cgroup holds.
func sumResources(res, overhead *runtime.LinuxContainerResources) *runtime.LinuxContainerResources {
	out := proto.Clone(res).(*runtime.LinuxContainerResources)
	if overhead == nil {
		return out
	}
	if out.MemoryLimitInBytes > 0 && overhead.MemoryLimitInBytes > 0 {
		out.MemoryLimitInBytes += overhead.MemoryLimitInBytes
	}
	if out.CpuShares > 0 {
		out.CpuShares += overhead.CpuShares
	}
	if out.CpuQuota > 0 && overhead.CpuQuota > 0 && out.CpuPeriod == overhead.CpuPeriod {
		out.CpuQuota += overhead.CpuQuota
	}
	return out
}
