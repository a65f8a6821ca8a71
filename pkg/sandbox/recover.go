package sandbox

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
)

// recoverTimeout bounds the work on one pod, so one hung pod never blocks
// start-up.
const recoverTimeout = 30 * time.Second

// Recover loads every pod and container checkpoint and reconciles them
// with the host.
//
// Assumptions:
//   - A pod is checkpointed as Creating before its first resource exists and
//     as Ready only once it is whole; every resource of a pod is derived from
//     its ID and config, or recorded before it is made (RunPod). So a
//     Creating, Removed or Unknown pod is released from its record, and a
//     pod whose checkpoint cannot be read is released from its ID alone (a
//     husk: its directory, cradle's cgroup, infra process, network and log
//     directory are all named by the ID).
//   - Ready and NotReady pods are kept (their namespaces are pinned files that
//     survive the daemon), except that a Ready pod whose own process has ended
//     is stopped.
//   - The runtime, not the record, knows where a container's process is: every
//     container is reconciled with it (a Created container that runs is
//     Running; one recorded Exited that still runs is killed; one that exited
//     while the daemon was away gets its real exit code and time). A Created
//     container to be restored from a checkpoint is unknown to the runtime
//     until it starts, and stays Created.
//   - A container recorded Exited may be unknown to its runtime: its
//     runtime state goes once the exit is recorded (releaseExited).
//   - A checkpoint the daemon died in left, at most, its work directory in
//     the container's bundle (removed here) and no archive: the archive is
//     an unnamed file until it is complete.
//   - A container is never left running untracked: one whose pod is gone (or
//     whose checkpoint cannot be read) is killed and released before its
//     pod's leftovers, so an IP is never released while a process of its pod
//     runs. The network keeps state only for the pods that live on.
func (m *Manager) Recover(ctx context.Context) error {
	ids, err := m.ckpt.List(podKind)
	if err != nil {
		return fmt.Errorf("list pod checkpoints: %w", err)
	}
	var live []string
	var husks []*Pod
	for _, id := range ids {
		pod, err := m.loadPod(id)
		if err == nil && pod.ID != id {
			err = fmt.Errorf("pod checkpoint %s holds pod %q: %w", id, pod.ID, errdefs.ErrDataLoss)
		}
		if err != nil {
			m.log.Error("unreadable pod checkpoint: the pod is released from its ID, with its containers", "pod", id, "error", err)
			husks = append(husks, m.husk(id))
			continue
		}
		if pod.NS == nil {
			pod.NS = map[string]string{}
		}
		if m.recoverPod(ctx, pod) {
			live = append(live, pod.ID)
		}
	}
	m.recoverContainers(ctx)
	for _, pod := range husks {
		if m.recoverPod(ctx, pod) {
			live = append(live, pod.ID)
		}
	}
	if err := m.opts.Network.Reconcile(ctx, live); err != nil {
		return fmt.Errorf("reconcile pod networks: %w", err)
	}
	m.log.Info("recovered pods", "pods", len(live))
	return nil
}

// husk is what is known of a pod whose checkpoint is lost: its ID, and
// what derives from it. It is Unknown: released, or kept listed while it
// cannot be.
func (m *Manager) husk(id string) *Pod {
	return &Pod{ID: id, Dir: m.podDir(id), Handler: m.opts.DefaultHandler, State: PodUnknown, NS: map[string]string{},
		Config: PodConfig{Name: "unknown-" + id[:min(12, len(id))], Namespace: "unknown", UID: id}}
}

// recoverPod finishes or keeps one pod and reports whether it lives on.
func (m *Manager) recoverPod(ctx context.Context, pod *Pod) bool {
	ctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	defer cancel()
	switch pod.State {
	case PodReady, PodNotReady:
		if err := m.names.reserve(pod.Config.uniqueName(), pod.ID); err != nil {
			m.log.Error("recovered pod's name is taken", "pod", pod.ID, "error", err)
		}
		m.mu.Lock()
		m.pods[pod.ID] = newPodEntry(pod)
		m.mu.Unlock()
		if pod.State == PodReady && pod.Pid != 0 && !ProcessAlive(pod.Pid, pod.PidStart) {
			// Its containers went with it (they shared its PID namespace).
			m.log.Warn("the pod's own process ended while the daemon was away; stopping the pod", "pod", pod.ID, "pid", pod.Pid)
			if err := m.stopLocked(ctx, pod); err != nil {
				m.log.Error("stop a pod whose process ended", "pod", pod.ID, "error", err)
			}
		}
		if pod.State == PodReady && pod.Pid != 0 {
			m.watchPodProcess(pod.ID, pod.Pid, pod.PidStart)
		}
		return true
	default:
		m.log.Info("finishing an interrupted pod", "pod", pod.ID, "state", pod.State.String())
		if err := m.release(ctx, pod); err != nil {
			// Kept as Unknown and visible, so RemovePodSandbox can retry.
			m.log.Error("could not release pod; keeping it as Unknown", "pod", pod.ID, "error", err)
			m.mu.Lock()
			m.pods[pod.ID] = newPodEntry(pod)
			m.mu.Unlock()
			return true
		}
		return false
	}
}

// recoverContainers loads container checkpoints and reconciles each with
// its runtime; containers of pods that are gone, and those whose
// checkpoint cannot be read, are killed and released.
func (m *Manager) recoverContainers(ctx context.Context) {
	ids, err := m.ckpt.List(containerKind)
	if err != nil {
		m.log.Error("list container checkpoints", "error", err)
		return
	}
	for _, id := range ids {
		c, err := m.loadContainer(id)
		if err == nil && c.ID != id {
			err = fmt.Errorf("container checkpoint %s holds container %q: %w", id, c.ID, errdefs.ErrDataLoss)
		}
		if err != nil {
			m.log.Error("unreadable container checkpoint: the container is killed and released from its ID", "container", id, "error", err)
			m.releaseOrphan(ctx, &Container{ID: id, Bundle: filepath.Join(m.opts.ContainerDir, id)}, "")
			continue
		}
		pod, b, err := m.podOf(c)
		if errdefs.IsNotFound(err) {
			m.log.Warn("container of a pod that is gone: killed and released", "container", id, "pod", c.PodID)
			m.releaseOrphan(ctx, c, c.PodID)
			continue
		}
		e := newContainerEntry(c)
		m.mu.Lock()
		m.containers[c.ID] = e
		m.mu.Unlock()
		if err != nil {
			m.log.Error("container without a usable pod", "container", id, "error", err)
			continue
		}
		m.recoverContainer(ctx, e, pod, b)
	}
}

// releaseOrphan kills and releases a container the engine keeps no pod
// for, trying its pod's handler (if known) first, then every other one
// (a runtime forgets containers it does not know without error); its
// checkpoint goes only once that worked.
func (m *Manager) releaseOrphan(ctx context.Context, c *Container, podID string) {
	ctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	defer cancel()
	if podID == "" {
		podID = "unknown"
	}
	handlers := make([]string, 0, len(m.opts.Backends))
	for h := range m.opts.Backends {
		handlers = append(handlers, h)
	}
	slices.Sort(handlers)
	var lastErr error
	for _, h := range handlers {
		b := m.opts.Backends[h]
		pod := &Pod{ID: podID, Dir: m.podDir(podID), Handler: h, NS: map[string]string{}}
		if lastErr = m.releaseContainer(ctx, c, pod, b); lastErr != nil {
			break
		}
	}
	if lastErr != nil {
		m.log.Error("could not release an orphaned container; retried at the next start", "container", c.ID, "error", lastErr)
		return
	}
	_ = m.ckpt.Delete(containerKind, c.ID)
}

func (m *Manager) recoverContainer(ctx context.Context, e *containerEntry, pod *Pod, b Backend) {
	ctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	defer cancel()
	c := e.c
	if err := m.names.reserve(containerName(pod, c.Config), c.ID); err != nil {
		m.log.Error("recovered container's name is taken", "container", c.ID, "error", err)
	}
	if c.State == ContainerCreating {
		m.log.Info("finishing an interrupted container create", "container", c.ID)
		if err := m.removeContainer(ctx, e, pod, b); err != nil {
			m.log.Error("could not release container; keeping it as Unknown", "container", c.ID, "error", err)
		}
		return
	}
	m.removeCheckpointWork(ctx, c)
	st, err := b.ContainerState(ctx, pod, c)
	switch {
	case errdefs.IsNotFound(err) && c.State == ContainerCreated && c.RestoreImages != "":
		// Restored from a checkpoint when started: the runtime makes it
		// only then.
	case errdefs.IsNotFound(err) && c.State == ContainerExited:
		// Released from its runtime once its exit was recorded
		// (releaseExited): nothing runs, nothing to reconcile.
	case errdefs.IsNotFound(err):
		m.log.Warn("the runtime does not know the container: it cannot run", "container", c.ID)
		c.Message = "the runtime lost the container while cradle was away"
		m.recordExit(e, ExitStatus{Code: 255, FinishedAt: time.Now().UTC()})
	case err != nil:
		m.log.Warn("container state unknown", "container", c.ID, "error", err)
	case st.Status == ProcessExited:
		m.recordExit(e, st.Exit) // no-op when recorded Exited
	case c.State == ContainerExited:
		// Recorded as exited (a start that failed) but its process runs:
		// never left running untracked.
		m.log.Warn("a container recorded as exited still runs: killed", "container", c.ID)
		if err := b.SignalContainer(ctx, pod, c, int(syscall.SIGKILL)); err != nil {
			m.log.Error("kill a container recorded as exited", "container", c.ID, "error", err)
		}
	case st.Status == ProcessRunning && c.State != ContainerRunning:
		// Started, but the daemon died before it recorded so.
		m.log.Info("a container recorded as created runs: Running", "container", c.ID, "was", c.State.String())
		if c.StartedAt.IsZero() {
			c.StartedAt = time.Now().UTC()
		}
		if err := m.setContainerState(c, ContainerRunning); err != nil {
			m.log.Error("record a running container", "container", c.ID, "error", err)
		}
		m.counters.monitorRestarts[restartRecovered].Add(1)
		go m.watch(pod, c.ID, b) //nolint:gosec // G118: the exit watch outlives the request that recovered it
	case c.State == ContainerRunning || c.State == ContainerUnknown:
		m.counters.monitorRestarts[restartRecovered].Add(1)
		go m.watch(pod, c.ID, b) //nolint:gosec // G118: the exit watch outlives the request that recovered it
	}
}
