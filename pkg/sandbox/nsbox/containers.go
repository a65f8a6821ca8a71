package nsbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/nsbox/ociruntime"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runtime is the handler's OCI runtime; a handler whose runtime (or
// conmon) is missing runs pods but no containers.
func (b *Backend) runtime(pod *sandbox.Pod) (*ociruntime.Runtime, error) {
	if b.rt == nil {
		return nil, fmt.Errorf("handler %q has no OCI runtime: %w", pod.Handler, errdefs.ErrFailedPrecondition)
	}
	return b.rt, nil
}

// CreateContainer writes the bundle's config.json (root "rootfs", mounted
// by the engine) and has the monitor create the container. A container
// restored from a checkpoint (c.RestoreImages) is only written: the
// runtime makes it when RestoreContainer starts it, as CRI-O does.
func (b *Backend) CreateContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container, spec *specs.Spec) (int, error) {
	rt, err := b.runtime(pod)
	if err != nil {
		return 0, err
	}
	readonly := spec.Root != nil && spec.Root.Readonly
	spec.Root = &specs.Root{Path: "rootfs", Readonly: readonly}
	if b.readOnlyTrees {
		// Released by DeleteContainer, which the engine's undo calls.
		if err := makeReadOnlyTrees(spec, c.Bundle); err != nil {
			return 0, err
		}
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(c.Bundle, "config.json"), data, 0o600); err != nil {
		return 0, err
	}
	if c.RestoreImages != "" {
		return 0, nil // the trees stay for RestoreContainer
	}
	return b.createWithTrees(ctx, rt, c, createOptions(c))
}

// createWithTrees has the runtime create c, then detaches the read-only
// trees made for its mounts: the container's mount namespace has its own
// copies by then, and a tree left in the host's would keep every
// mount point under its source busy there (the source's owner could not
// remove it while the container runs, as with a runtime's own "rro").
// A tree that cannot be detached now is, at the latest, by
// DeleteContainer.
func (b *Backend) createWithTrees(ctx context.Context, rt *ociruntime.Runtime, c *sandbox.Container, o ociruntime.CreateOptions) (int, error) {
	pid, err := rt.Create(ctx, o)
	if err == nil && b.readOnlyTrees {
		if rerr := releaseReadOnlyTrees(c.Bundle); rerr != nil {
			b.log.WarnContext(ctx, "detach the read-only trees after create", "container", c.ID, "error", rerr)
		}
	}
	return pid, err
}

func createOptions(c *sandbox.Container) ociruntime.CreateOptions {
	logPath := c.LogPath
	if logPath == "" {
		// kubelet asked for no log; the monitor still needs somewhere to write.
		logPath = os.DevNull
	}
	return ociruntime.CreateOptions{
		ID: c.ID, Bundle: c.Bundle, LogPath: logPath,
		Stdin: c.Config.Stdin, StdinOnce: c.Config.StdinOnce, Terminal: c.Config.TTY,
	}
}

// CheckpointContainer has the OCI runtime dump c's processes with CRIU
// into imageDir, leaving them running.
func (b *Backend) CheckpointContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container, imageDir, workDir string) error {
	rt, err := b.runtime(pod)
	if err != nil {
		return err
	}
	return rt.Checkpoint(ctx, c.ID, imageDir, workDir)
}

// RestoreContainer makes and starts a container written by CreateContainer
// from the CRIU images in c.RestoreImages, under its monitor; it returns
// the restored init's pid.
func (b *Backend) RestoreContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) (int, error) {
	rt, err := b.runtime(pod)
	if err != nil {
		return 0, err
	}
	o := createOptions(c)
	o.Restore = c.RestoreImages
	return b.createWithTrees(ctx, rt, c, o)
}

// StartContainer starts a created container (sandbox.Backend).
func (b *Backend) StartContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) error {
	rt, err := b.runtime(pod)
	if err != nil {
		return err
	}
	return rt.Start(ctx, c.ID)
}

// SignalContainer sends sig to the container's processes (sandbox.Backend).
func (b *Backend) SignalContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container, sig int) error {
	rt, err := b.runtime(pod)
	if err != nil {
		return err
	}
	return rt.Kill(ctx, c.ID, syscall.Signal(sig), true)
}

// WaitContainer blocks until the container exits (sandbox.Backend).
func (b *Backend) WaitContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) (sandbox.ExitStatus, error) {
	rt, err := b.runtime(pod)
	if err != nil {
		return sandbox.ExitStatus{}, err
	}
	st, err := rt.Wait(ctx, c.ID)
	if err != nil {
		return sandbox.ExitStatus{}, err
	}
	return sandbox.ExitStatus{Code: st.ExitCode, FinishedAt: st.FinishedAt, OOMKilled: st.OOMKilled}, nil
}

// ContainerState combines the OCI runtime's state with conmon's exit file.
func (b *Backend) ContainerState(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) (sandbox.ProcessState, error) {
	rt, err := b.runtime(pod)
	if err != nil {
		return sandbox.ProcessState{}, err
	}
	st, err := rt.Status(ctx, c.ID)
	if err != nil {
		return sandbox.ProcessState{}, err
	}
	switch {
	case st.Exited:
		return sandbox.ProcessState{Status: sandbox.ProcessExited,
			Exit: sandbox.ExitStatus{Code: st.ExitCode, FinishedAt: st.FinishedAt, OOMKilled: st.OOMKilled}}, nil
	case st.State == ociruntime.StateCreated:
		return sandbox.ProcessState{Status: sandbox.ProcessCreated}, nil
	}
	// Running, or stopped with its exit not yet written by conmon: the
	// exit watch records it.
	return sandbox.ProcessState{Status: sandbox.ProcessRunning}, nil
}

// DeleteContainer releases the container's runtime state (sandbox.Backend)
// and then the read-only trees made for its mounts (which the runtime's
// container no longer uses), whatever the handler does now.
func (b *Backend) DeleteContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) error {
	rt, err := b.runtime(pod)
	if err != nil {
		return err
	}
	err = rt.Delete(ctx, c.ID, true)
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if rerr := releaseReadOnlyTrees(c.Bundle); rerr != nil {
		return rerr
	}
	return err
}

// ReleaseExited deletes an exited container from its OCI runtime
// (`runtime delete`: its state and cgroup), removes its monitor's files
// (conmon has written the exit code, which the engine has recorded) and
// unmounts its rootfs, which nothing uses any more.
func (b *Backend) ReleaseExited(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) error {
	if err := b.DeleteContainer(ctx, pod, c); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("release the runtime state: %w", err)
	}
	if err := mount.UnmountAll(c.Rootfs(), 0); err != nil {
		return fmt.Errorf("unmount the rootfs: %w", err)
	}
	// Its mount point goes too: removing it detaches the copies of the
	// rootfs mount that other mount namespaces took since (each crun
	// conmon's on a hybrid-cgroup host takes the host's mounts), which
	// would otherwise hold the container's overlay until it is removed,
	// maybe much later. Removal and recovery take a missing mount point.
	if err := os.Remove(c.Rootfs()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the rootfs mount point: %w", err)
	}
	return nil
}

// Exec runs o.Cmd with the container's environment, user and working
// directory.
func (b *Backend) Exec(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container, o sandbox.ExecOptions) (int32, error) {
	rt, err := b.runtime(pod)
	if err != nil {
		return -1, err
	}
	data, err := os.ReadFile(filepath.Join(c.Bundle, "config.json"))
	if err != nil {
		return -1, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return -1, err
	}
	proc := *spec.Process
	proc.Args, proc.Terminal, proc.ConsoleSize = o.Cmd, o.TTY, nil
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	code, err := rt.Exec(ctx, c.ID, ociruntime.ExecOptions{
		Process: &proc, Stdin: o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr,
		Resize: sandbox.Relay(ctx, o.Resize, winSize), Timeout: o.Timeout,
	})
	return int32(code), err
}

// Attach connects to the container's stdio through its monitor.
func (b *Backend) Attach(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container, o sandbox.AttachOptions) error {
	rt, err := b.runtime(pod)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	return rt.Attach(ctx, c.ID, ociruntime.AttachOptions{
		Stdin: o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr,
		CloseStdin: c.Config.StdinOnce && !c.Config.TTY,
		Resize:     sandbox.Relay(ctx, o.Resize, winSize),
	})
}

func winSize(s sandbox.TerminalSize) ociruntime.WinSize {
	return ociruntime.WinSize{Width: s.Width, Height: s.Height}
}

// ReopenLog has the container's log written to a fresh file (sandbox.Backend).
func (b *Backend) ReopenLog(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) error {
	rt, err := b.runtime(pod)
	if err != nil {
		return err
	}
	return rt.ReopenLog(ctx, c.ID)
}
