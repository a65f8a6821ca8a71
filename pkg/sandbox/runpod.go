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

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/cleanup"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"golang.org/x/sys/unix"
)

// RunPod makes a pod sandbox and returns its ID: a list of named steps.
// Write-ahead: the pod is checkpointed as Creating before its first
// resource exists, and every resource a step makes is either derived from
// the pod's ID and config alone (its directory, cgroups, network
// namespace, network records, log directory, the backend's mounts and
// processes) or recorded before it is made. A failed step, like a crash
// (Recover), is undone by release, from that record; a pod release cannot
// finish stays listed as Unknown and is retried by RemovePodSandbox and the
// next start, never forgotten.
func (m *Manager) RunPod(ctx context.Context, cfg PodConfig) (_ string, retErr error) {
	handler, backend, err := m.validatePod(&cfg)
	if err != nil {
		return "", err
	}
	defer m.opts.NRI.BlockSync()()
	pod := &Pod{ID: newID(), Config: cfg, Handler: handler, State: PodCreating, CreatedAt: time.Now().UTC(), NS: map[string]string{}}
	pod.Dir = m.podDir(pod.ID)
	if pod.Config.LogDirectory == "" {
		pod.Config.LogDirectory = m.podLogDir(pod.ID) // made by the first container's create
	}
	if err := m.names.reserve(cfg.uniqueName(), pod.ID); err != nil {
		return "", fmt.Errorf("pod sandbox %q: %w", cfg.uniqueName(), err)
	}
	if err := m.save(pod); err != nil {
		m.names.release(cfg.uniqueName(), pod.ID)
		return "", err
	}
	e := newPodEntry(pod)
	e.mu.Lock()
	defer e.mu.Unlock()
	m.mu.Lock()
	m.pods[pod.ID] = e
	m.mu.Unlock()
	running := false
	defer func() {
		if retErr != nil || !running { // !running: a step panicked
			m.abandonPod(ctx, pod)
		}
	}()
	m.failpoint("runpod:recorded")
	for _, step := range []struct {
		name string
		run  func(context.Context, *Pod, Backend) error
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
		if err := step.run(ctx, pod, backend); err != nil {
			return "", fmt.Errorf("run pod sandbox %s: %s: %w", cfg.uniqueName(), step.name, err)
		}
		m.failpoint("runpod:" + step.name)
		m.log.DebugContext(ctx, "pod step done", "pod", pod.ID, "step", step.name, "took", time.Since(start))
	}
	if err := m.opts.NRI.RunPod(ctx, pod); err != nil {
		return "", fmt.Errorf("run pod sandbox %s: %w", cfg.uniqueName(), err)
	}
	if err := m.setPodState(pod, PodReady); err != nil {
		return "", err
	}
	running = true
	if pod.Pid != 0 {
		m.watchPodProcess(pod.ID, pod.Pid, pod.PidStart)
	}
	m.emitPod(EventCreated, pod)
	m.emitPod(EventStarted, pod)
	m.log.InfoContext(ctx, "pod sandbox running", "pod", pod.ID, "name", cfg.uniqueName(), "ips", pod.IPs)
	return pod.ID, nil
}

// abandonPod undoes a failed RunPod on a fresh bounded context: released
// and forgotten, or kept as Unknown when release fails (the caller holds
// the pod's lock).
func (m *Manager) abandonPod(ctx context.Context, pod *Pod) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanup.Timeout) // the request's values (its ID), not its end
	defer cancel()
	if err := m.release(ctx, pod); err != nil {
		m.log.ErrorContext(ctx, "undo of a failed RunPodSandbox; the pod stays listed as Unknown until it can be removed", "pod", pod.ID, "error", err)
		return
	}
	m.mu.Lock()
	delete(m.pods, pod.ID)
	m.mu.Unlock()
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

func (m *Manager) stepFiles(_ context.Context, pod *Pod, _ Backend) error {
	if err := os.MkdirAll(pod.Dir, 0o711); err != nil {
		return err
	}
	return writePodFiles(pod)
}

// podCgroup is the pod's cgroup, from its config and ID alone: kubelet's
// pod cgroup when it names one (it names the pod's own), else one cradle
// makes under its cgroup root. owned says whether cradle made it.
func (m *Manager) podCgroup(pod *Pod) (cg string, owned bool, err error) {
	parent := pod.Config.CgroupParent
	if parent == "" {
		parent = m.opts.CgroupRoot
	}
	if m.opts.SystemdCgroups && strings.HasSuffix(parent, ".slice") {
		if parent, err = expandSlice(parent); err != nil {
			return "", false, err
		}
	}
	if pod.Config.CgroupParent != "" {
		return parent, false, nil
	}
	return path.Join(parent, "pod-"+pod.ID[:12]), true, nil
}

// infraCgroup is the leaf of the pod's cgroup that holds its own process.
func infraCgroup(podCgroup, podID string) string {
	return path.Join(podCgroup, "pod-"+podID[:12]+"-infra")
}

func (m *Manager) stepCgroup(_ context.Context, pod *Pod, _ Backend) error {
	cg, _, err := m.podCgroup(pod)
	if err != nil {
		return err
	}
	pod.Cgroup = cg
	if err := m.save(pod); err != nil {
		return err
	}
	return m.opts.Cgroups.Create(pod.Cgroup, nil)
}

func (m *Manager) stepNetNS(_ context.Context, pod *Pod, _ Backend) error {
	if pod.Config.Network == ctrconfig.NamespaceNode {
		return nil
	}
	if pod.Config.UserNS != nil {
		return nil // made by the backend, inside the pod's user namespace (userns.go)
	}
	// Its path is derived from the pod's ID; Recover sweeps the ones of
	// pods it does not keep.
	p, err := m.opts.Network.NewNetNS(pod.ID)
	if err != nil {
		return err
	}
	pod.NetNS = p
	return m.save(pod)
}

func (m *Manager) stepBackend(ctx context.Context, pod *Pod, b Backend) error {
	if err := b.StartPod(ctx, pod); err != nil {
		return err
	}
	if pod.Pid != 0 {
		// The pod's own process counts against the pod, in a leaf of its
		// own (cgroup v2 allows no process beside child cgroups), recorded
		// with the process, before it is made.
		pod.PidCgroup = infraCgroup(pod.Cgroup, pod.ID)
	}
	if err := m.save(pod); err != nil {
		return err
	}
	if pod.Pid == 0 {
		return nil
	}
	if err := m.opts.Cgroups.Create(pod.PidCgroup, nil); err != nil {
		return err
	}
	for _, pid := range append([]int{pod.Pid}, pod.AuxPids...) {
		// With its children (virtiofsd forks its sandboxed worker).
		for _, p := range withDescendants(pid) {
			if err := m.opts.Cgroups.AddProcess(pod.PidCgroup, p); err != nil && processExists(p) {
				return fmt.Errorf("move the pod's process %d into %s: %w", p, pod.PidCgroup, err)
			}
		}
	}
	return nil
}

// stepJoinNetwork tells the backend that the pod network is up: a
// sandbox that joins it itself (a VM's NIC) does so.
func (m *Manager) stepJoinNetwork(ctx context.Context, pod *Pod, b Backend) error {
	if pod.NetNS == "" {
		return nil
	}
	return b.JoinNetwork(ctx, pod)
}

func (m *Manager) stepSysctls(_ context.Context, pod *Pod, _ Backend) error {
	return applySysctls(pod)
}

// stepNetwork wires the pod; the network records what it makes under the
// pod's ID before making it (Teardown undoes from that). The addresses are
// checkpointed with the pod's Ready state: a pod that crashes before that
// is released, and its network torn down from the network's records.
func (m *Manager) stepNetwork(ctx context.Context, pod *Pod, _ Backend) error {
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
	if b != nil {
		for _, e := range m.containersOf(pod.ID) {
			errs = append(errs, m.stopContainer(ctx, e, pod, b, 0, syscall.SIGKILL))
		}
	}
	m.failpoint("stoppod:containers")
	if pod.State == PodReady {
		m.opts.NRI.StopPod(ctx, pod)
	}
	if b != nil {
		errs = append(errs, b.StopPod(ctx, pod))
	}
	m.failpoint("stoppod:sandbox")
	errs = append(errs, m.opts.Network.Teardown(ctx, pod.ID))
	m.failpoint("stoppod:network")
	if err := errors.Join(errs...); err != nil {
		_ = m.setPodState(pod, PodUnknown)
		return fmt.Errorf("stop pod sandbox %s: %w", pod.ID, err)
	}
	if err := m.setPodState(pod, PodNotReady); err != nil {
		return err
	}
	m.log.InfoContext(ctx, "pod sandbox stopped", "pod", pod.ID)
	m.emitPod(EventStopped, pod)
	return nil
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
	m.mu.Lock()
	removed := m.pods[e.pod.ID] != e
	m.mu.Unlock()
	if removed {
		return nil // by a removal this one waited for
	}
	if err := m.stopLocked(ctx, e.pod); err != nil {
		return err
	}
	if b := m.opts.Backends[e.pod.Handler]; b != nil {
		for _, ce := range m.containersOf(e.pod.ID) {
			if err := m.removeContainer(ctx, ce, e.pod, b); err != nil {
				return fmt.Errorf("remove pod sandbox %s: %w", e.pod.ID, err)
			}
		}
	}
	m.failpoint("removepod:containers")
	if err := m.release(ctx, e.pod); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.pods, e.pod.ID)
	m.mu.Unlock()
	m.samples.forget(e.pod.ID)
	m.opts.NRI.RemovePod(ctx, e.pod)
	m.emitPod(EventDeleted, e.pod)
	m.log.InfoContext(ctx, "pod sandbox removed", "pod", e.pod.ID)
	return nil
}

// release frees everything a pod holds, from its ID, config and recorded
// fields alone: used by RemovePod, by a failed RunPod and by recovery of
// interrupted creates. Each part is idempotent. The checkpoint goes last,
// so a failure leaves the pod listed as Unknown, to be finished later.
func (m *Manager) release(ctx context.Context, pod *Pod) error {
	var errs []error
	backendErr := error(nil)
	if b := m.opts.Backends[pod.Handler]; b != nil {
		backendErr = b.DeletePod(ctx, pod)
		errs = append(errs, backendErr)
	}
	m.failpoint("removepod:sandbox")
	errs = append(errs, m.opts.Network.Teardown(ctx, pod.ID))
	if pod.NetNS != "" {
		errs = append(errs, m.opts.Network.RemoveNetNS(pod.NetNS))
	}
	m.failpoint("removepod:network")
	cg, owned, err := m.podCgroup(pod)
	if err != nil {
		cg, owned = pod.Cgroup, pod.Config.CgroupParent == ""
	}
	if cg != "" {
		errs = append(errs, m.opts.Cgroups.Delete(ctx, infraCgroup(cg, pod.ID)))
	}
	if cg != "" && owned {
		errs = append(errs, m.opts.Cgroups.Delete(ctx, cg))
	}
	m.failpoint("removepod:cgroup")
	if backendErr == nil {
		// Not while the backend may still have something mounted in it
		// (a VM's shared directory): RemoveAll would walk into it.
		errs = append(errs, unmountBelow(pod.Dir), os.RemoveAll(pod.Dir))
	}
	errs = append(errs, os.RemoveAll(m.podLogDir(pod.ID)))
	if err := errors.Join(errs...); err != nil {
		if pod.State != PodUnknown {
			_ = m.setPodState(pod, PodUnknown)
		}
		return fmt.Errorf("remove pod sandbox %s: %w", pod.ID, err)
	}
	if err := CheckPodTransition(pod.ID, pod.State, PodRemoved); err != nil {
		return err
	}
	m.names.release(pod.Config.uniqueName(), pod.ID)
	pod.State = PodRemoved // not checkpointed: the checkpoint goes
	return m.ckpt.Delete(podKind, pod.ID)
}

// unmountBelow unmounts whatever is still mounted at or below dir, deepest
// first: what a crash left before its record named it.
func unmountBelow(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := mount.UnmountRecursive(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount below %s: %w", dir, err)
	}
	return nil
}
