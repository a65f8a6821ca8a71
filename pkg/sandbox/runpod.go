package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/cleanup"
)

// RunPod makes a pod sandbox and returns its ID: a list of named steps,
// each pushing its undo, so a failure at any step leaves nothing. The pod is
// checkpointed as Creating before the first resource exists, so a crash
// mid-way is undone by Recover.
func (m *Manager) RunPod(ctx context.Context, cfg PodConfig) (_ string, retErr error) {
	handler, backend, err := m.validatePod(&cfg)
	if err != nil {
		return "", err
	}
	pod := &Pod{ID: newID(), Config: cfg, Handler: handler, State: PodCreating, CreatedAt: time.Now().UTC(), NS: map[string]string{}}
	pod.Dir = m.podDir(pod.ID)
	if pod.Config.LogDirectory == "" {
		pod.Config.LogDirectory = m.podLogDir(pod.ID) // made by the first container's create
	}
	if err := m.names.reserve(cfg.uniqueName(), pod.ID); err != nil {
		return "", fmt.Errorf("pod sandbox %q: %w", cfg.uniqueName(), err)
	}
	var undo cleanup.Stack
	defer func() {
		if retErr != nil {
			if err := undo.Run(); err != nil {
				m.log.Error("undo of a failed RunPodSandbox", "pod", pod.ID, "error", err)
			}
		}
	}()
	undo.Push(func(context.Context) error { m.names.release(cfg.uniqueName(), pod.ID); return nil })
	if err := m.save(pod); err != nil {
		return "", err
	}
	undo.Push(func(context.Context) error { return m.ckpt.Delete(podKind, pod.ID) })

	e := newPodEntry(pod)
	e.mu.Lock()
	defer e.mu.Unlock()
	m.mu.Lock()
	m.pods[pod.ID] = e
	m.mu.Unlock()
	undo.Push(func(context.Context) error { m.mu.Lock(); delete(m.pods, pod.ID); m.mu.Unlock(); return nil })

	for _, step := range []struct {
		name string
		run  func(context.Context, *Pod, Backend, *cleanup.Stack) error
	}{
		{"pod files", m.stepFiles},
		{"cgroup", m.stepCgroup},
		{"network namespace", m.stepNetNS},
		{"sandbox", m.stepBackend},
		{"sysctls", m.stepSysctls},
		{"network", m.stepNetwork},
		{"sandbox network", m.stepJoinNetwork},
	} {
		start := time.Now()
		if err := step.run(ctx, pod, backend, &undo); err != nil {
			return "", fmt.Errorf("run pod sandbox %s: %s: %w", cfg.uniqueName(), step.name, err)
		}
		m.log.Debug("pod step done", "pod", pod.ID, "step", step.name, "took", time.Since(start))
	}
	pod.State = PodReady
	if err := m.save(pod); err != nil {
		return "", err
	}
	undo.Release()
	if pod.Pid != 0 {
		m.watchPodProcess(pod.ID, pod.Pid, pod.PidStart)
	}
	m.emitPod(EventCreated, pod)
	m.emitPod(EventStarted, pod)
	m.log.Info("pod sandbox running", "pod", pod.ID, "name", cfg.uniqueName(), "ips", pod.IPs)
	return pod.ID, nil
}

// validatePod checks what the CRI edge cannot (handlers, modes) and fills
// defaults.
func (m *Manager) validatePod(cfg *PodConfig) (string, Backend, error) {
	if cfg.Name == "" || cfg.Namespace == "" || cfg.UID == "" {
		return "", nil, fmt.Errorf("pod metadata needs name, namespace and uid: %w", errdefs.ErrInvalidArgument)
	}
	handler := cfg.Handler
	if handler == "" {
		handler = m.opts.DefaultHandler
	}
	backend, ok := m.opts.Backends[handler]
	if !ok {
		return "", nil, fmt.Errorf("runtime handler %q is not configured or has no pod backend: %w", handler, errdefs.ErrInvalidArgument)
	}
	if cfg.LogDirectory != "" && !filepath.IsAbs(cfg.LogDirectory) {
		return "", nil, fmt.Errorf("log directory %q is not absolute: %w", cfg.LogDirectory, errdefs.ErrInvalidArgument)
	}
	if m.opts.SystemdCgroups && strings.HasSuffix(cfg.CgroupParent, ".slice") {
		if _, err := expandSlice(cfg.CgroupParent); err != nil {
			return "", nil, err
		}
	} else if cfg.CgroupParent != "" && (!path.IsAbs(cfg.CgroupParent) || path.Clean(cfg.CgroupParent) != cfg.CgroupParent) {
		return "", nil, fmt.Errorf("cgroup parent %q must be an absolute, clean path: %w", cfg.CgroupParent, errdefs.ErrInvalidArgument)
	}
	if err := m.checkUserNS(handler, *cfg); err != nil {
		return "", nil, err
	}
	return handler, backend, nil
}

func (m *Manager) stepFiles(_ context.Context, pod *Pod, _ Backend, undo *cleanup.Stack) error {
	if err := os.MkdirAll(pod.Dir, 0o711); err != nil {
		return err
	}
	undo.Push(func(context.Context) error { return os.RemoveAll(pod.Dir) })
	return writePodFiles(pod)
}

func (m *Manager) stepCgroup(_ context.Context, pod *Pod, _ Backend, undo *cleanup.Stack) error {
	parent := pod.Config.CgroupParent
	if parent == "" {
		parent = m.opts.CgroupRoot
	}
	if m.opts.SystemdCgroups && strings.HasSuffix(parent, ".slice") {
		p, err := expandSlice(parent)
		if err != nil {
			return err
		}
		parent = p
	}
	// kubelet names the pod's own cgroup as the parent.
	pod.Cgroup = parent
	if pod.Config.CgroupParent == "" {
		pod.Cgroup = path.Join(parent, "pod-"+pod.ID[:12])
	}
	if err := m.opts.Cgroups.Create(pod.Cgroup, nil); err != nil {
		return err
	}
	if pod.Config.CgroupParent == "" {
		undo.Push(func(ctx context.Context) error { return m.opts.Cgroups.Delete(ctx, pod.Cgroup) })
	}
	return m.save(pod)
}

func (m *Manager) stepNetNS(_ context.Context, pod *Pod, _ Backend, undo *cleanup.Stack) error {
	if pod.Config.Network == NamespaceNode {
		return nil
	}
	if pod.Config.UserNS != nil {
		return userNetNS(m.opts.Network, pod, undo)
	}
	p, err := m.opts.Network.NewNetNS(pod.ID)
	if err != nil {
		return err
	}
	pod.NetNS = p
	undo.Push(func(context.Context) error { return m.opts.Network.RemoveNetNS(p) })
	return m.save(pod)
}

func (m *Manager) stepBackend(ctx context.Context, pod *Pod, b Backend, undo *cleanup.Stack) error {
	undo.Push(func(ctx context.Context) error { return b.DeletePod(ctx, pod) })
	if err := b.StartPod(ctx, pod); err != nil {
		return err
	}
	if err := m.save(pod); err != nil {
		return err
	}
	if pod.Pid == 0 {
		return nil
	}
	// The pod's own process counts against the pod, in a leaf of its own
	// (cgroup v2 allows no process beside child cgroups).
	cg := path.Join(pod.Cgroup, "pod-"+pod.ID[:12]+"-infra")
	if err := m.opts.Cgroups.Create(cg, nil); err != nil {
		return err
	}
	pod.PidCgroup = cg
	undo.Push(func(ctx context.Context) error { return m.opts.Cgroups.Delete(ctx, cg) })
	for _, pid := range append([]int{pod.Pid}, pod.AuxPids...) {
		if err := m.opts.Cgroups.AddProcess(cg, pid); err != nil {
			return fmt.Errorf("move the pod's process %d into %s: %w", pid, cg, err)
		}
	}
	return m.save(pod)
}

// stepJoinNetwork tells a backend whose sandbox must join the pod network
// itself (a VM's NIC) that the network is up.
func (m *Manager) stepJoinNetwork(ctx context.Context, pod *Pod, b Backend, _ *cleanup.Stack) error {
	j, ok := b.(NetworkJoiner)
	if !ok || pod.NetNS == "" {
		return nil
	}
	return j.JoinNetwork(ctx, pod)
}

func (m *Manager) stepSysctls(_ context.Context, pod *Pod, _ Backend, _ *cleanup.Stack) error {
	return applySysctls(pod)
}

func (m *Manager) stepNetwork(ctx context.Context, pod *Pod, _ Backend, undo *cleanup.Stack) error {
	undo.Push(func(ctx context.Context) error { return m.opts.Network.Teardown(ctx, pod.ID) })
	ips, err := m.opts.Network.Setup(ctx, pod)
	if err != nil {
		return err
	}
	pod.IPs = ips
	return nil
}

// StopPod stops the pod's processes and releases its network. Stopping a
// stopped or unknown pod is not an error (kubelet retries).
func (m *Manager) StopPod(ctx context.Context, id string) error {
	e, err := m.entry(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return m.stopLocked(ctx, e.pod)
}

func (m *Manager) stopLocked(ctx context.Context, pod *Pod) error {
	if pod.State == PodNotReady || pod.State == PodRemoved {
		return nil
	}
	b := m.opts.Backends[pod.Handler]
	var errs []error
	if cb, ok := b.(ContainerBackend); ok {
		for _, e := range m.containersOf(pod.ID) {
			errs = append(errs, m.stopContainer(ctx, e, pod, cb, 0, syscall.SIGKILL))
		}
	}
	if b != nil {
		errs = append(errs, b.StopPod(ctx, pod))
	}
	errs = append(errs, m.opts.Network.Teardown(ctx, pod.ID))
	if err := errors.Join(errs...); err != nil {
		pod.State = PodUnknown
		_ = m.save(pod)
		return fmt.Errorf("stop pod sandbox %s: %w", pod.ID, err)
	}
	if err := CheckPodTransition(pod.ID, pod.State, PodNotReady); err != nil {
		return err
	}
	pod.State = PodNotReady
	m.log.Info("pod sandbox stopped", "pod", pod.ID)
	err := m.save(pod)
	m.emitPod(EventStopped, pod)
	return err
}

// RemovePod removes a pod, stopping it first (forced, as the CRI asks).
// Removing an unknown pod is not an error.
func (m *Manager) RemovePod(ctx context.Context, id string) error {
	e, err := m.entry(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := m.stopLocked(ctx, e.pod); err != nil {
		return err
	}
	if cb, ok := m.opts.Backends[e.pod.Handler].(ContainerBackend); ok {
		for _, ce := range m.containersOf(e.pod.ID) {
			if err := m.removeContainer(ctx, ce, e.pod, cb); err != nil {
				return fmt.Errorf("remove pod sandbox %s: %w", e.pod.ID, err)
			}
		}
	}
	if err := m.release(ctx, e.pod); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.pods, e.pod.ID)
	m.mu.Unlock()
	m.samples.forget(e.pod.ID)
	m.emitPod(EventDeleted, e.pod)
	m.log.Info("pod sandbox removed", "pod", e.pod.ID)
	return nil
}

// release frees everything a pod holds, from its fields alone; used by
// RemovePod and by recovery of interrupted creates. The checkpoint goes
// last, so a failure leaves the pod to be finished later.
func (m *Manager) release(ctx context.Context, pod *Pod) error {
	var errs []error
	backendErr := error(nil)
	if b := m.opts.Backends[pod.Handler]; b != nil {
		backendErr = b.DeletePod(ctx, pod)
		errs = append(errs, backendErr)
	}
	errs = append(errs, m.opts.Network.Teardown(ctx, pod.ID))
	if pod.NetNS != "" {
		errs = append(errs, m.opts.Network.RemoveNetNS(pod.NetNS))
	}
	if pod.PidCgroup != "" {
		errs = append(errs, m.opts.Cgroups.Delete(ctx, pod.PidCgroup))
	}
	if pod.Cgroup != "" && pod.Config.CgroupParent == "" {
		errs = append(errs, m.opts.Cgroups.Delete(ctx, pod.Cgroup))
	}
	if backendErr == nil {
		// Not while the backend may still have something mounted in it
		// (a VM's shared directory): RemoveAll would walk into it.
		errs = append(errs, os.RemoveAll(pod.Dir))
	}
	errs = append(errs, os.RemoveAll(m.podLogDir(pod.ID)))
	if err := errors.Join(errs...); err != nil {
		pod.State = PodUnknown
		_ = m.save(pod)
		return fmt.Errorf("remove pod sandbox %s: %w", pod.ID, err)
	}
	m.names.release(pod.Config.uniqueName(), pod.ID)
	pod.State = PodRemoved
	return m.ckpt.Delete(podKind, pod.ID)
}
