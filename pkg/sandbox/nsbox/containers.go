package nsbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/nsbox/ociruntime"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// maxExecOutput caps what ExecSync keeps of each stream, as kubelet's
// 16 MiB limit.
const maxExecOutput = 16 << 20

var _ sandbox.ContainerBackend = (*Backend)(nil)

func (b *Backend) runtimeFor(pod *sandbox.Pod) (*ociruntime.Runtime, error) {
	rt, ok := b.runtimes[pod.Handler]
	if !ok {
		return nil, fmt.Errorf("handler %q has no OCI runtime: %w", pod.Handler, errdefs.ErrFailedPrecondition)
	}
	return rt, nil
}

// CreateContainer writes the bundle's config.json (root "rootfs", mounted
// by the engine) and has the monitor create the container.
func (b *Backend) CreateContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container, spec *specs.Spec) (int, error) {
	rt, err := b.runtimeFor(pod)
	if err != nil {
		return 0, err
	}
	readonly := spec.Root != nil && spec.Root.Readonly
	spec.Root = &specs.Root{Path: "rootfs", Readonly: readonly}
	data, err := json.Marshal(spec)
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(c.Bundle, "config.json"), data, 0o600); err != nil {
		return 0, err
	}
	logPath := c.LogPath
	if logPath == "" {
		// kubelet asked for no log; the monitor still needs somewhere to write.
		logPath = os.DevNull
	}
	return rt.Create(ctx, ociruntime.CreateOptions{
		ID: c.ID, Bundle: c.Bundle, LogPath: logPath,
		Stdin: c.Config.GetStdin(), Terminal: c.Config.GetTty(),
	})
}

func (b *Backend) StartContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) error {
	rt, err := b.runtimeFor(pod)
	if err != nil {
		return err
	}
	return rt.Start(ctx, c.ID)
}

func (b *Backend) SignalContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container, sig int) error {
	rt, err := b.runtimeFor(pod)
	if err != nil {
		return err
	}
	return rt.Kill(ctx, c.ID, syscall.Signal(sig), true)
}

func (b *Backend) WaitContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) (sandbox.ExitStatus, error) {
	rt, err := b.runtimeFor(pod)
	if err != nil {
		return sandbox.ExitStatus{}, err
	}
	st, err := rt.Wait(ctx, c.ID)
	if err != nil {
		return sandbox.ExitStatus{}, err
	}
	return sandbox.ExitStatus{Code: st.ExitCode, FinishedAt: st.FinishedAt, OOMKilled: st.OOMKilled}, nil
}

func (b *Backend) ContainerExited(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) (sandbox.ExitStatus, bool, error) {
	rt, err := b.runtimeFor(pod)
	if err != nil {
		return sandbox.ExitStatus{}, false, err
	}
	st, err := rt.Status(ctx, c.ID)
	if err != nil {
		return sandbox.ExitStatus{}, false, err
	}
	return sandbox.ExitStatus{Code: st.ExitCode, FinishedAt: st.FinishedAt, OOMKilled: st.OOMKilled}, st.Exited, nil
}

func (b *Backend) DeleteContainer(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) error {
	rt, err := b.runtimeFor(pod)
	if err != nil {
		return err
	}
	return rt.Delete(ctx, c.ID, true)
}

// ExecSync runs cmd with the container's environment, user and working
// directory, and returns its output (up to 16 MiB a stream).
func (b *Backend) ExecSync(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container, cmd []string, timeout time.Duration) (sandbox.ExecResult, error) {
	rt, err := b.runtimeFor(pod)
	if err != nil {
		return sandbox.ExecResult{}, err
	}
	data, err := os.ReadFile(filepath.Join(c.Bundle, "config.json"))
	if err != nil {
		return sandbox.ExecResult{}, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return sandbox.ExecResult{}, err
	}
	proc := *spec.Process
	proc.Args, proc.Terminal = cmd, false
	var stdout, stderr bytes.Buffer
	code, err := rt.Exec(ctx, c.ID, ociruntime.ExecOptions{Process: &proc, Stdout: &stdout, Stderr: &stderr, Timeout: timeout, MaxOutput: maxExecOutput})
	if err != nil {
		return sandbox.ExecResult{}, err
	}
	return sandbox.ExecResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: int32(code)}, nil
}

func (b *Backend) ReopenLog(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container) error {
	rt, err := b.runtimeFor(pod)
	if err != nil {
		return err
	}
	return rt.ReopenLog(ctx, c.ID)
}
