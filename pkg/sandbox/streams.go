package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/containerd/errdefs"
)

// maxExecSyncOutput caps what ExecSync keeps of each stream, as kubelet's
// 16 MiB limit.
const maxExecSyncOutput = 16 << 20

// RunningContainer returns a copy of a running container: an unknown one
// is ErrNotFound, one in any other state ErrFailedPrecondition.
func (m *Manager) RunningContainer(id string) (Container, error) {
	c, err := m.Container(id)
	if err != nil {
		return Container{}, err
	}
	if c.State != ContainerRunning {
		return Container{}, fmt.Errorf("container %s is %s: %w", c.ID, c.State, errdefs.ErrFailedPrecondition)
	}
	return c, nil
}

// runningIn returns a running container with its pod and backend.
func (m *Manager) runningIn(id string) (*Container, *Pod, Backend, error) {
	c, err := m.RunningContainer(id)
	if err != nil {
		return nil, nil, nil, err
	}
	pod, b, err := m.podOf(&c)
	if err != nil {
		return nil, nil, nil, err
	}
	return &c, pod, b, nil
}

// ReadyPod returns a copy of a ready pod: an unknown one is ErrNotFound, a
// stopped one ErrFailedPrecondition.
func (m *Manager) ReadyPod(id string) (Pod, error) {
	p, err := m.Pod(id)
	if err != nil {
		return Pod{}, err
	}
	if p.State != PodReady {
		return Pod{}, fmt.Errorf("pod sandbox %s is %s: %w", p.ID, p.State, errdefs.ErrFailedPrecondition)
	}
	return p, nil
}

// Exec runs o.Cmd in a running container and returns its exit code: the
// one process-execution path of ExecSync and the streaming Exec.
func (m *Manager) Exec(ctx context.Context, id string, o ExecOptions) (int32, error) {
	if len(o.Cmd) == 0 {
		return -1, fmt.Errorf("exec needs a command: %w", errdefs.ErrInvalidArgument)
	}
	c, pod, b, err := m.runningIn(id)
	if err != nil {
		return -1, err
	}
	o.Cmd = slices.Clone(o.Cmd)
	return b.Exec(ctx, pod, c, o)
}

// ExecSync runs cmd in a running container and returns its output (up to
// 16 MiB a stream; the rest is drained and dropped).
func (m *Manager) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (ExecResult, error) {
	stdout := &limitedBuffer{left: maxExecSyncOutput}
	stderr := &limitedBuffer{left: maxExecSyncOutput}
	code, err := m.Exec(ctx, id, ExecOptions{Cmd: cmd, Stdout: stdout, Stderr: stderr, Timeout: timeout})
	if err != nil {
		return ExecResult{}, err
	}
	return ExecResult{Stdout: stdout.b.Bytes(), Stderr: stderr.b.Bytes(), ExitCode: code}, nil
}

// Attach connects o to the stdio of a running container until it exits or
// ctx ends.
func (m *Manager) Attach(ctx context.Context, id string, o AttachOptions) error {
	c, pod, b, err := m.runningIn(id)
	if err != nil {
		return err
	}
	if !c.Config.Stdin {
		o.Stdin = nil
	}
	return b.Attach(ctx, pod, c, o)
}

// PortForward connects to TCP port inside a ready pod's network.
func (m *Manager) PortForward(ctx context.Context, podID string, port int32) (net.Conn, error) {
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("port %d is outside 1..65535: %w", port, errdefs.ErrInvalidArgument)
	}
	p, err := m.ReadyPod(podID)
	if err != nil {
		return nil, err
	}
	b, ok := m.opts.Backends[p.Handler]
	if !ok {
		return nil, fmt.Errorf("pod sandbox %s: no backend for handler %s: %w", p.ID, p.Handler, errdefs.ErrFailedPrecondition)
	}
	conn, err := b.DialPort(ctx, &p, port)
	if err != nil {
		return nil, fmt.Errorf("port-forward to port %d of pod sandbox %s: %w", port, p.ID, err)
	}
	return conn, nil
}

// limitedBuffer keeps the first left bytes written to it and drops the
// rest, always reporting success so the process's output is drained.
type limitedBuffer struct {
	b    bytes.Buffer
	left int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	n := min(len(p), l.left)
	l.b.Write(p[:n])
	l.left -= n
	return len(p), nil
}
