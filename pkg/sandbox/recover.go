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
// survive the daemon). The network keeps state only for the live pods.
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
		m.pods[pod.ID] = &podEntry{pod: pod}
		m.mu.Unlock()
		return true
	default:
		m.log.Info("finishing an interrupted pod", "pod", pod.ID, "state", pod.State.String())
		if err := m.release(ctx, pod); err != nil {
			// Kept as Unknown and visible, so RemovePodSandbox can retry.
			m.log.Error("could not release pod; keeping it as Unknown", "pod", pod.ID, "error", err)
			m.mu.Lock()
			m.pods[pod.ID] = &podEntry{pod: pod}
			m.mu.Unlock()
			return true
		}
		return false
	}
}
