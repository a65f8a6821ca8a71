package sandbox

import (
	"context"
	"fmt"
	"time"
)

// recoverTimeout bounds the work on one pod, so one hung pod never blocks
// start-up.
const recoverTimeout = 30 * time.Second

// Recover loads every pod checkpoint and reconciles it with the host.
//
// Assumptions: a pod is checkpointed as Creating before its first resource
// exists and as Ready only once it is whole, so a Creating pod is the trace
// of an interrupted RunPodSandbox and is released from its recorded fields;
// a Removed or Unknown pod is finished off the same way; Ready and NotReady
// pods are kept as they are (their namespaces are pinned files that
// survive the daemon), except that a Ready pod whose own process (Pod.Pid)
// has ended is stopped. The network keeps state only for the live pods.
func (m *Manager) Recover(ctx context.Context) error {
	ids, err := m.ckpt.List(podKind)
	if err != nil {
		return fmt.Errorf("list pod checkpoints: %w", err)
	}
	var live []string
	for _, id := range ids {
		var pod Pod
		if _, err := m.ckpt.Load(podKind, id, &pod); err != nil {
			m.log.Error("unreadable pod checkpoint: dropped", "pod", id, "error", err)
			_ = m.ckpt.Delete(podKind, id)
			continue
		}
		if pod.NS == nil {
			pod.NS = map[string]string{}
		}
		if m.recoverPod(ctx, &pod) {
			live = append(live, pod.ID)
		}
	}
	m.recoverContainers(ctx)
	if err := m.opts.Network.Reconcile(ctx, live); err != nil {
		return fmt.Errorf("reconcile pod networks: %w", err)
	}
	m.log.Info("recovered pods", "pods", len(live))
	return nil
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

// recoverContainers loads container checkpoints: an interrupted create is
// released; a container that ran is watched again, or, if it exited while
// the daemon was away, shows Exited with its real exit code and time (the
// monitor recorded them).
func (m *Manager) recoverContainers(ctx context.Context) {
	ids, err := m.ckpt.List(containerKind)
	if err != nil {
		m.log.Error("list container checkpoints", "error", err)
		return
	}
	for _, id := range ids {
		c := &Container{}
		if _, err := m.ckpt.Load(containerKind, id, c); err != nil {
			m.log.Error("unreadable container checkpoint: dropped", "container", id, "error", err)
			_ = m.ckpt.Delete(containerKind, id)
			continue
		}
		e := newContainerEntry(c)
		m.mu.Lock()
		m.containers[c.ID] = e
		m.mu.Unlock()
		pod, b, err := m.podOf(c)
		if err != nil {
			m.log.Error("container without a usable pod", "container", id, "error", err)
			continue
		}
		m.recoverContainer(ctx, e, pod, b)
	}
}

func (m *Manager) recoverContainer(ctx context.Context, e *containerEntry, pod *Pod, b ContainerBackend) {
	ctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	defer cancel()
	c := e.c
	if err := m.names.reserve(containerName(pod, c.Config), c.ID); err != nil {
		m.log.Error("recovered container's name is taken", "container", c.ID, "error", err)
	}
	switch c.State {
	case ContainerCreating:
		m.log.Info("finishing an interrupted container create", "container", c.ID)
		if err := m.removeContainer(ctx, e, pod, b); err != nil {
			m.log.Error("could not release container; keeping it as Unknown", "container", c.ID, "error", err)
		}
	case ContainerRunning, ContainerUnknown:
		st, exited, err := b.ContainerExited(ctx, pod, c)
		switch {
		case err != nil:
			m.log.Warn("container state unknown", "container", c.ID, "error", err)
		case exited:
			m.recordExit(e, st)
		default:
			m.counters.monitorRestarts[restartRecovered].Add(1)
			go m.watch(pod, c.ID, b)
		}
	}
}
