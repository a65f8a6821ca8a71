package sandbox

import (
	"context"
	"errors"

	"golang.org/x/sys/unix"
)

// watchPodProcess stops the pod when its own process (an infra process, a
// VMM) ends while it is Ready: its containers went with it (a shared PID
// namespace, a VM), so the pod is NotReady and its network released, as
// kubelet expects to see. A pod stopped or removed meanwhile is left alone.
// It waits on a pidfd, so a recycled pid is never mistaken for the process.
func (m *Manager) watchPodProcess(podID string, pid int, start uint64) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		m.log.Warn("cannot watch the pod's process", "pod", podID, "pid", pid, "error", err)
		return
	}
	// The pidfd names the process it was opened for: check that it is ours.
	if !ProcessAlive(pid, start) {
		_ = unix.Close(fd)
		return
	}
	go func() {
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err == nil || !errors.Is(err, unix.EINTR) {
				break
			}
		}
		e, err := m.entry(podID)
		if err != nil {
			return
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.pod.State != PodReady || e.pod.Pid != pid || e.pod.PidStart != start {
			return
		}
		m.log.Warn("the pod's own process ended; stopping the pod", "pod", podID, "pid", pid)
		if err := m.stopLocked(context.Background(), e.pod); err != nil {
			m.log.Error("stop a pod whose process ended", "pod", podID, "error", err)
		}
	}()
}
