package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/cleanup"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/cradle-runtime/cradle/pkg/sandbox/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// containerEntryOf finds a container by ID or unique ID prefix.
func (m *Manager) containerEntryOf(id string) (*containerEntry, error) {
	if id == "" {
		return nil, fmt.Errorf("empty container ID: %w", errdefs.ErrInvalidArgument)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.containers[id]; ok {
		return e, nil
	}
	var found *containerEntry
	for cid, e := range m.containers {
		if strings.HasPrefix(cid, id) {
			if found != nil {
				return nil, fmt.Errorf("container ID prefix %q is ambiguous: %w", id, errdefs.ErrInvalidArgument)
			}
			found = e
		}
	}
	if found == nil {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return found, nil
}

// lockContainer finds container id and returns its entry locked; one
// removed while the caller waited for its lock is NotFound.
func (m *Manager) lockContainer(id string) (*containerEntry, error) {
	e, err := m.containerEntryOf(id)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	if e.removed {
		e.mu.Unlock()
		return nil, fmt.Errorf("container %q: removed: %w", id, errdefs.ErrNotFound)
	}
	return e, nil
}

// podOf returns a snapshot of the container's pod and its backend.
func (m *Manager) podOf(c *Container) (*Pod, Backend, error) {
	p, err := m.Pod(c.PodID)
	if err != nil {
		return nil, nil, err
	}
	b, err := m.backendOf(&p)
	if err != nil {
		return nil, nil, err
	}
	return &p, b, nil
}

// backendOf returns the backend of pod's handler: a pod recovered from an
// earlier run may have a handler that is no longer ready (a vm handler
// whose kernel cannot be prepared) or configured.
func (m *Manager) backendOf(pod *Pod) (Backend, error) {
	b, ok := m.opts.Backends[pod.Handler]
	if !ok {
		return nil, fmt.Errorf("handler %s has no backend: %w", pod.Handler, errdefs.ErrNotImplemented)
	}
	return b, nil
}

// StartContainer starts a Created container of a Ready pod and watches
// for its exit.
func (m *Manager) StartContainer(ctx context.Context, id string) error {
	found, err := m.containerEntryOf(id)
	if err != nil {
		return err
	}
	found.mu.Lock()
	podID := found.c.PodID
	found.mu.Unlock()
	// The pod's lock, then the container's (the order of CreateContainer
	// and StopPod): a start and the pod's stop or removal do not
	// interleave. Without it a stop that found the container Created (and
	// so left it) could be followed by its start, in a stopped pod.
	pe, err := m.entry(podID)
	if err != nil {
		return err
	}
	pe.mu.Lock()
	defer pe.mu.Unlock()
	e, err := m.lockContainer(id)
	if err != nil {
		return err
	}
	defer e.mu.Unlock()
	c := e.c
	if err := CheckContainerTransition(c.ID, c.State, ContainerRunning); err != nil || c.State == ContainerRunning {
		if err == nil {
			err = fmt.Errorf("container %s is already running: %w", c.ID, errdefs.ErrFailedPrecondition)
		}
		return err
	}
	if pe.pod.State != PodReady {
		return fmt.Errorf("start container %s: pod sandbox %s is %s: %w", c.ID, pe.pod.ID, pe.pod.State, errdefs.ErrFailedPrecondition)
	}
	pod, b, err := m.podOf(c)
	if err != nil {
		return err
	}
	if err := m.opts.NRI.StartContainer(ctx, pod, c); err != nil {
		return fmt.Errorf("start container %s: %w", c.ID, err)
	}
	if err := m.startProcess(ctx, pod, c, b); err != nil {
		// The runtime may have started it all the same (a start retried
		// after a crash, a timeout): ask before calling it failed.
		if st, serr := b.ContainerState(ctx, pod, c); serr == nil && st.Status == ProcessRunning {
			m.log.WarnContext(ctx, "start reported an error but the container runs", "container", c.ID, "error", err)
		} else {
			c.FinishedAt, c.Reason, c.Message, c.ExitCode = time.Now().UTC(), "StartError", err.Error(), 128
			_ = m.setContainerState(c, ContainerExited)
			m.emitContainer(EventStopped, c)
			m.opts.NRI.StopContainer(ctx, pod, c)
			return fmt.Errorf("start container %s: %w", c.ID, err)
		}
	}
	m.failpoint("startcontainer:runtime")
	c.StartedAt = time.Now().UTC()
	if err := m.setContainerState(c, ContainerRunning); err != nil {
		return err
	}
	// Published before the watch starts, so its exit event comes after.
	m.emitContainer(EventStarted, c)
	go m.watch(pod, c.ID, b) //nolint:gosec // G118: the exit watch outlives the request that started the container
	m.opts.NRI.PostStartContainer(ctx, pod, c)
	return nil
}

// watchBackoff bounds the pause before a failed wait is started again.
const watchBackoff = 30 * time.Second

// watch waits for a running container's exit and records it. A wait that
// fails (the monitor's exit file unreadable, inotify exhausted) is started
// again, with backoff, for as long as the container runs: an exit must
// never go unrecorded.
func (m *Manager) watch(pod *Pod, id string, b Backend) {
	for attempt := 0; ; attempt++ {
		m.mu.Lock()
		e := m.containers[id]
		m.mu.Unlock()
		if e == nil {
			return
		}
		e.mu.Lock()
		c := *e.c
		e.mu.Unlock()
		if c.State != ContainerRunning && c.State != ContainerUnknown {
			return
		}
		st, err := b.WaitContainer(context.Background(), pod, &c)
		if err == nil {
			if m.recordExit(e, st) {
				m.releaseExited(context.Background(), e, pod, b)
			}
			return
		}
		if errdefs.IsNotFound(err) {
			return // removed while waited for
		}
		m.log.Warn("wait for container failed; watching again", "container", id, "attempt", attempt, "error", err)
		m.counters.monitorRestarts[restartWaitFailed].Add(1)
		time.Sleep(min(watchBackoff, time.Duration(1<<min(attempt, 10))*50*time.Millisecond))
	}
}

// recordExit records a container's exit, and reports whether it did (it
// had not been recorded yet).
func (m *Manager) recordExit(e *containerEntry, st ExitStatus) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.c
	if c.State == ContainerExited || e.removed {
		return false
	}
	c.ExitCode, c.FinishedAt = st.Code, st.FinishedAt
	// A VM's guest stamps its exits by its own clock, which can lag the
	// host's that stamped the start: an exit is never before its start.
	if c.FinishedAt.Before(c.StartedAt) {
		c.FinishedAt = c.StartedAt
	}
	switch {
	case st.OOMKilled:
		c.Reason = "OOMKilled"
	case st.Code == 0:
		c.Reason = "Completed"
	default:
		c.Reason = "Error"
	}
	if err := m.setContainerState(c, ContainerExited); err != nil {
		m.log.Error("record container exit", "container", c.ID, "error", err)
	}
	m.emitContainer(EventStopped, c)
	m.log.Info("container exited", "container", c.ID, "code", st.Code, "reason", c.Reason)
	if pod, err := m.Pod(c.PodID); err == nil {
		m.opts.NRI.StopContainer(context.Background(), &pod, c)
	}
	return true
}

// StopContainer sends the container's stop signal, then SIGKILL once
// timeout has passed. Stopping a stopped container is not an error.
func (m *Manager) StopContainer(ctx context.Context, id string, timeout time.Duration) error {
	e, err := m.containerEntryOf(id)
	if errdefs.IsNotFound(err) {
		return nil // idempotent, as kubelet expects
	}
	if err != nil {
		return err
	}
	e.mu.Lock()
	c := *e.c
	e.mu.Unlock()
	if c.State != ContainerRunning {
		return nil
	}
	pod, b, err := m.podOf(&c)
	if err != nil {
		return err
	}
	sig := unix.SignalNum(c.StopSignal)
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	return m.stopContainer(ctx, e, pod, b, timeout, sig)
}

// stopContainer does StopContainer's work for a known pod and backend (the
// caller may hold the pod's lock).
func (m *Manager) stopContainer(ctx context.Context, e *containerEntry, pod *Pod, b Backend, timeout time.Duration, sig syscall.Signal) error {
	e.mu.Lock()
	c := *e.c
	e.mu.Unlock()
	if c.State != ContainerRunning {
		return nil
	}
	if timeout > 0 {
		if err := b.SignalContainer(ctx, pod, &c, int(sig)); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return fmt.Errorf("signal container %s: %w", c.ID, err)
		}
		m.failpoint("stopcontainer:signalled")
		wctx, cancel := context.WithTimeout(ctx, timeout)
		st, err := b.WaitContainer(wctx, pod, &c)
		cancel()
		if err == nil {
			m.recordExit(e, st)
			m.releaseExited(ctx, e, pod, b)
			return nil
		}
		if exitedMeanwhile(e, err) {
			return nil
		}
	}
	if err := b.SignalContainer(ctx, pod, &c, int(syscall.SIGKILL)); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return fmt.Errorf("kill container %s: %w", c.ID, err)
	}
	m.failpoint("stopcontainer:killed")
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := b.WaitContainer(wctx, pod, &c)
	if exitedMeanwhile(e, err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("container %s did not die after SIGKILL: %w", c.ID, err)
	}
	m.recordExit(e, st)
	m.releaseExited(ctx, e, pod, b)
	return nil
}

// exitedMeanwhile reports whether a wait failed with NotFound because the
// exit watch recorded the container's exit first and released its runtime
// state (releaseExited): the runtime no longer knows a container that is
// stopped all the same.
func exitedMeanwhile(e *containerEntry, waitErr error) bool {
	if !errdefs.IsNotFound(waitErr) {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.c.State == ContainerExited
}

// releaseExited frees, once a container's exit is recorded, what only a
// live container needs, where its backend allows (Backend.ReleaseExited):
// the runtime's state (its cgroup, the monitor's files) and the rootfs
// mount.
// The record, the writable layer's snapshot (its usage is still reported),
// the bundle and the log stay until RemoveContainer, which does these
// steps again (each is idempotent): so StopContainer leaves it little to
// do (StopContainer releases even when the exit watch recorded the exit
// first: the watch's release may not have run yet). It runs after the
// exit is persisted, so a crash in between leaves
// an Exited container for RemoveContainer or the next start to finish. A
// failure is logged, not returned: the container has stopped all the
// same.
func (m *Manager) releaseExited(ctx context.Context, e *containerEntry, pod *Pod, b Backend) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanup.Timeout)
	defer cancel()
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.c
	m.mu.Lock()
	removed := e.removed || m.containers[c.ID] != e
	m.mu.Unlock()
	if removed || c.State != ContainerExited {
		return
	}
	if err := b.ReleaseExited(ctx, pod, c); err != nil {
		m.log.WarnContext(ctx, "release an exited container; RemoveContainer retries", "container", c.ID, "error", err)
	}
}

// RemoveContainer removes a container, killing it if it runs. Removing an
// unknown container is not an error.
func (m *Manager) RemoveContainer(ctx context.Context, id string) error {
	e, err := m.containerEntryOf(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	e.mu.Lock()
	c := *e.c
	e.mu.Unlock()
	pod, b, err := m.podOf(&c)
	if err != nil {
		return err
	}
	return m.removeContainer(ctx, e, pod, b)
}

// removeContainer kills and releases a container of a known pod (the
// caller may hold the pod's lock).
func (m *Manager) removeContainer(ctx context.Context, e *containerEntry, pod *Pod, b Backend) error {
	if err := m.stopContainer(ctx, e, pod, b, 0, syscall.SIGKILL); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.removed {
		return nil // by a removal this one waited for
	}
	c := e.c
	if err := m.releaseContainer(ctx, c, pod, b); err != nil {
		return err
	}
	m.names.release(containerName(pod, c.Config), c.ID)
	if err := m.ckpt.Delete(containerKind, c.ID); err != nil {
		return err
	}
	e.removed = true
	m.mu.Lock()
	delete(m.containers, c.ID)
	m.mu.Unlock()
	m.samples.forget(c.ID)
	m.opts.NRI.RemoveContainer(ctx, pod, c)
	m.emitContainer(EventDeleted, c)
	m.log.InfoContext(ctx, "container removed", "container", c.ID)
	return nil
}

// releaseContainer frees what a container holds, from its ID and record
// alone, each part idempotent: the runtime's state (which kills what
// still runs), the rootfs mount, its snapshot and its bundle. A failure
// leaves it Unknown, checkpointed, to be finished later.
func (m *Manager) releaseContainer(ctx context.Context, c *Container, pod *Pod, b Backend) error {
	var errs []error
	if err := b.DeleteContainer(ctx, pod, c); err != nil && !errdefs.IsNotFound(err) {
		errs = append(errs, err)
	}
	m.failpoint("removecontainer:runtime")
	if err := mount.UnmountAll(c.Rootfs(), 0); err != nil {
		errs = append(errs, err)
	}
	if err := m.opts.Images.RemoveRootfs(ctx, c.ID); err != nil && !errdefs.IsNotFound(err) {
		errs = append(errs, err)
	}
	m.failpoint("removecontainer:rootfs")
	if err := m.releaseImageVolumes(ctx, c); err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, os.RemoveAll(c.Bundle))
	}
	if err := errors.Join(errs...); err != nil {
		if c.State != ContainerUnknown {
			_ = m.setContainerState(c, ContainerUnknown) // its removal failed
		}
		return fmt.Errorf("remove container %s: %w", c.ID, err)
	}
	return nil
}

// containersOf lists the entries of a pod's containers.
func (m *Manager) containersOf(podID string) []*containerEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*containerEntry
	for _, e := range m.containers {
		if e.c.PodID == podID {
			out = append(out, e)
		}
	}
	return out
}

// ContainerFilter selects containers; zero fields match everything.
type ContainerFilter struct {
	ID     string
	PodID  string
	State  *ContainerState
	Labels map[string]string
}

// Container returns a copy of one container.
func (m *Manager) Container(id string) (Container, error) {
	e, err := m.lockContainer(id)
	if err != nil {
		return Container{}, err
	}
	defer e.mu.Unlock()
	return *e.c, nil
}

// ListContainers returns the containers that match f, oldest first.
func (m *Manager) ListContainers(f ContainerFilter) []Container {
	m.mu.Lock()
	entries := make([]*containerEntry, 0, len(m.containers))
	for _, e := range m.containers {
		entries = append(entries, e)
	}
	m.mu.Unlock()
	var out []Container
	for _, e := range entries {
		e.mu.Lock()
		c := *e.c
		e.mu.Unlock()
		if f.matches(c) {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

func (f ContainerFilter) matches(c Container) bool {
	if f.ID != "" && !strings.HasPrefix(c.ID, f.ID) || f.PodID != "" && !strings.HasPrefix(c.PodID, f.PodID) {
		return false
	}
	if f.State != nil && c.State != *f.State {
		return false
	}
	for k, v := range f.Labels {
		if c.Config.Labels[k] != v {
			return false
		}
	}
	return c.State != ContainerCreating
}

// ReopenContainerLog makes the monitor reopen the container's log file.
func (m *Manager) ReopenContainerLog(ctx context.Context, id string) error {
	c, pod, b, err := m.runningIn(id)
	if err != nil {
		return err
	}
	return b.ReopenLog(ctx, pod, c)
}

// UpdateContainerResources applies new limits to a live container's cgroup
// and keeps them for its status.
func (m *Manager) UpdateContainerResources(ctx context.Context, id string, res *ctrconfig.Resources) error {
	e, err := m.lockContainer(id)
	if err != nil {
		return err
	}
	defer e.mu.Unlock()
	c := e.c
	if c.State != ContainerRunning && c.State != ContainerCreated {
		return fmt.Errorf("container %s is %s: %w", c.ID, c.State, errdefs.ErrFailedPrecondition)
	}
	next := &specs.LinuxResources{}
	if c.Resources != nil {
		copied := *c.Resources
		next = &copied
	}
	pod, _, err := m.podOf(c)
	if err != nil {
		return err
	}
	host, err := m.hostFor(pod)
	if err != nil {
		return err
	}
	if _, err := oci.UpdateResources(next, res, host); err != nil {
		return err
	}
	if err := m.updateCgroup(ctx, c, next); err != nil {
		return fmt.Errorf("update cgroup of container %s: %w", c.ID, err)
	}
	c.Resources = next
	// Copies of the container (statuses, event snapshots) have their own
	// Config, whose Resources keep pointing at what they were.
	c.Config.Resources = res.Clone()
	return m.saveContainer(c)
}

// updateCgroup applies res to c's cgroup through its pod's backend.
func (m *Manager) updateCgroup(ctx context.Context, c *Container, res *specs.LinuxResources) error {
	pod, b, err := m.podOf(c)
	if err != nil {
		return err
	}
	return b.UpdateContainerCgroup(ctx, pod, c, res)
}
