package vmbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/agent/api"
	"github.com/cradle-runtime/cradle/pkg/agent/client"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// call runs fn against the agent of pod's VM.
func (b *Backend) call(ctx context.Context, pod *sandbox.Pod, fn func(api.AgentService) error) error {
	vm, err := b.vmOf(pod)
	if err != nil {
		return err
	}
	return vm.Agent().Call(ctx, fn)
}

// CreateContainer makes the container's root and bind mounts reachable in
// the guest (binds under the pod's shared directory), turns its spec into
// the guest's (GuestSpec) and has the agent create it.
func (b *Backend) CreateContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container, spec *specs.Spec) (int, error) {
	if len(c.Config.Devices) > 0 {
		return 0, fmt.Errorf("device %s: a microVM pod's containers cannot have host devices: %w", c.Config.Devices[0].HostPath, errdefs.ErrInvalidArgument)
	}
	gspec, binds, err := GuestSpec(spec, GuestPaths{ContainerID: c.ID, PodID: pod.ID, Rootfs: c.Rootfs()})
	if err != nil {
		return 0, err
	}
	if err := b.checkFits(pod, gspec.Linux); err != nil {
		return 0, err
	}
	logPath, err := b.guestLogPath(pod, c)
	if err != nil {
		return 0, err
	}
	shared := SharedDir(pod)
	if err := bindAll(shared, binds); err != nil {
		return 0, errors.Join(err, unbindTree(filepath.Join(shared, containerRel(c.ID))))
	}
	data, err := json.Marshal(gspec)
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(c.Bundle, guestSpecFile), data, 0o600); err != nil {
		return 0, errors.Join(err, unbindTree(filepath.Join(shared, containerRel(c.ID))))
	}
	var pid int32
	err = b.call(ctx, pod, func(s api.AgentService) error {
		r, err := s.CreateContainer(ctx, &api.CreateContainerRequest{
			Id: c.ID, Spec: data, LogPath: logPath,
			Stdin: c.Config.Stdin, StdinOnce: c.Config.StdinOnce, Tty: c.Config.TTY,
		})
		if err == nil {
			pid = r.Pid
		}
		return err
	})
	if err != nil {
		return 0, errors.Join(fmt.Errorf("create container in the guest: %w", err),
			unbindTree(filepath.Join(shared, containerRel(c.ID))))
	}
	return int(pid), nil
}

// guestLogPath is where the guest writes c's log: the pod's log directory
// is bind-mounted once into the shared directory.
func (b *Backend) guestLogPath(pod *sandbox.Pod, c *sandbox.Container) (string, error) {
	if c.LogPath == "" {
		return "", nil
	}
	rel, err := filepath.Rel(pod.Config.LogDirectory, c.LogPath)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("log path %s is outside the pod's log directory: %w", c.LogPath, errdefs.ErrInvalidArgument)
	}
	if err := bindOnce(SharedDir(pod), Bind{Source: pod.Config.LogDirectory, Rel: logsRel}); err != nil {
		return "", fmt.Errorf("share the pod's log directory: %w", err)
	}
	return guestPath(filepath.Join(logsRel, rel)), nil
}

// logsRel is where the pod's log directory is in the shared directory.
const logsRel = "logs"

// StartContainer starts a created container (sandbox.Backend).
func (b *Backend) StartContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) error {
	return b.call(ctx, pod, func(s api.AgentService) error {
		_, err := s.StartContainer(ctx, &api.ContainerRequest{Id: c.ID})
		return err
	})
}

// SignalContainer sends sig to the container's processes (sandbox.Backend).
func (b *Backend) SignalContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container, sig int) error {
	return b.call(ctx, pod, func(s api.AgentService) error {
		_, err := s.SignalContainer(ctx, &api.SignalContainerRequest{Id: c.ID, Signal: int32(sig), All: true})
		return err
	})
}

// waitRetry is how long WaitContainer waits before asking again after the
// session to the agent broke (the agent keeps the exit).
const waitRetry = 200 * time.Millisecond

// WaitContainer blocks until the container exits. A lost session is
// dialled again; the VM ending ends the container (killed, 137).
func (b *Backend) WaitContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) (sandbox.ExitStatus, error) {
	for {
		vm, err := b.vmOf(pod)
		if err != nil {
			return sandbox.ExitStatus{}, err
		}
		var exit *api.ContainerExit
		err = vm.Agent().Call(ctx, func(s api.AgentService) (err error) {
			exit, err = s.WaitContainer(ctx, &api.ContainerRequest{Id: c.ID})
			return err
		})
		if err == nil {
			return exitStatus(exit), nil
		}
		if ctx.Err() != nil {
			return sandbox.ExitStatus{}, ctx.Err()
		}
		select {
		case <-vm.Exited():
			return vmGone(), nil
		default:
		}
		if !errors.Is(err, client.ErrDisconnected) && !isDialError(err) {
			return sandbox.ExitStatus{}, err
		}
		select {
		case <-ctx.Done():
			return sandbox.ExitStatus{}, ctx.Err()
		case <-vm.Exited():
			return vmGone(), nil
		case <-time.After(waitRetry):
		}
	}
}

// vmGone is the exit of a container whose VM ended under it.
func vmGone() sandbox.ExitStatus {
	return sandbox.ExitStatus{Code: 128 + int32(syscall.SIGKILL), FinishedAt: time.Now()}
}

func isDialError(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && (errno == syscall.ECONNREFUSED || errno == syscall.ENOENT)
}

// exitStatus is an exit the agent reports, stamped by the guest's clock.
// That clock is set from the host's at boot but drifts under TCG, so a
// finish time later than now (the host's, on receipt) is taken as now:
// a container cannot have exited in the future.
func exitStatus(e *api.ContainerExit) sandbox.ExitStatus {
	at := time.Unix(0, e.GetFinishedAtUnixNs())
	if now := time.Now(); at.After(now) {
		at = now
	}
	return sandbox.ExitStatus{Code: e.GetExitCode(), FinishedAt: at, OOMKilled: e.GetOomKilled()}
}

// ContainerState asks the agent without blocking; a VM that is gone has
// no running containers. The agent cannot tell created from started
// (ProcessUnsure).
func (b *Backend) ContainerState(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) (sandbox.ProcessState, error) {
	vm, err := b.vmOf(pod)
	if err != nil {
		return sandbox.ProcessState{}, err
	}
	gone := sandbox.ProcessState{Status: sandbox.ProcessExited, Exit: vmGone()}
	select {
	case <-vm.Exited():
		return gone, nil
	default:
	}
	var st *api.ContainerStateResponse
	err = vm.Agent().Call(ctx, func(s api.AgentService) (err error) {
		st, err = s.ContainerState(ctx, &api.ContainerRequest{Id: c.ID})
		return err
	})
	if errdefs.IsNotFound(err) {
		return gone, nil // the guest does not know it: it cannot run
	}
	if err != nil {
		return sandbox.ProcessState{}, err
	}
	if !st.Exited {
		return sandbox.ProcessState{Status: sandbox.ProcessUnsure}, nil
	}
	return sandbox.ProcessState{Status: sandbox.ProcessExited, Exit: exitStatus(st.Exit)}, nil
}

// DeleteContainer has the agent forget the container, then removes its
// binds from the shared directory. A VM that is gone has nothing to forget.
// Idempotent, from the container's fields alone.
func (b *Backend) DeleteContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) error {
	var errs []error
	if vm, err := b.vmOf(pod); err == nil && !exited(vm) {
		err := vm.Agent().Call(ctx, func(s api.AgentService) error {
			_, err := s.RemoveContainer(ctx, &api.ContainerRequest{Id: c.ID})
			return err
		})
		if err != nil && !exited(vm) {
			errs = append(errs, fmt.Errorf("remove container in the guest: %w", err))
		}
	}
	errs = append(errs, unbindTree(filepath.Join(SharedDir(pod), containerRel(c.ID))))
	return errors.Join(errs...)
}

// ReleaseExited keeps what an exited container holds until RemoveContainer
// (DeleteContainer): the guest keeps the container, and its rootfs, shared
// into the VM, stays mounted.
func (b *Backend) ReleaseExited(context.Context, *sandbox.Pod, *sandbox.Container) error {
	return nil
}

// CheckpointContainer refuses: CRIU checkpoints the processes of the
// host's OCI runtime, not a guest's.
func (b *Backend) CheckpointContainer(_ context.Context, pod *sandbox.Pod, c *sandbox.Container, _, _ string) error {
	return fmt.Errorf("container %s: handler %s cannot checkpoint containers (CRIU checkpoints the runc and crun containers of namespace pods, not a microVM's): %w",
		c.ID, pod.Handler, errdefs.ErrFailedPrecondition)
}

// RestoreContainer refuses, as CheckpointContainer does.
func (b *Backend) RestoreContainer(_ context.Context, pod *sandbox.Pod, _ *sandbox.Container) (int, error) {
	return 0, fmt.Errorf("handler %s cannot restore checkpoints: %w", pod.Handler, errdefs.ErrFailedPrecondition)
}

func exited(vm *VM) bool {
	select {
	case <-vm.Exited():
		return true
	default:
		return false
	}
}

// ReopenLog has the container's log written to a fresh file (sandbox.Backend).
func (b *Backend) ReopenLog(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) error {
	return b.call(ctx, pod, func(s api.AgentService) error {
		_, err := s.ReopenLog(ctx, &api.ContainerRequest{Id: c.ID})
		return err
	})
}
