package sandbox

import "sync/atomic"

// Why a container's exit watch was started again.
const (
	restartRecovered  = iota // a restarted daemon re-adopted a running container's monitor
	restartWaitFailed        // a wait on the monitor failed and was started again
	restartReasons
)

// counters are the engine's own counts, read by the daemon's metrics.
type counters struct {
	monitorRestarts [restartReasons]atomic.Uint64
}

// MonitorRestarts counts the exit watches started again, by reason
// ("recovered": after a daemon restart; "wait_failed": after an error).
func (m *Manager) MonitorRestarts() map[string]uint64 {
	return map[string]uint64{
		"recovered":   m.counters.monitorRestarts[restartRecovered].Load(),
		"wait_failed": m.counters.monitorRestarts[restartWaitFailed].Load(),
	}
}

// StateCounts counts the pods and containers by state name.
func (m *Manager) StateCounts() (pods, containers map[string]int) {
	pods, containers = map[string]int{}, map[string]int{}
	for _, s := range []PodState{PodCreating, PodReady, PodNotReady, PodUnknown} {
		pods[s.String()] = 0
	}
	for _, s := range []ContainerState{ContainerCreating, ContainerCreated, ContainerRunning, ContainerExited, ContainerUnknown} {
		containers[s.String()] = 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.pods {
		pods[e.seen.State.String()]++
	}
	for _, e := range m.containers {
		containers[e.seen.State.String()]++
	}
	return pods, containers
}
