package vmbox

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
	"github.com/cradle-runtime/cradle/pkg/agent/client"
	"github.com/cradle-runtime/cradle/pkg/osthread"
	"golang.org/x/sys/unix"
)

// VM is one running microVM: its QEMU process and its agent.
type VM struct {
	spec   VMSpec
	pid    int
	kill   func() error  // SIGKILL to QEMU, never to a recycled pid
	exited chan struct{} // closed when QEMU has exited (and, if ours, been reaped)
	log    *slog.Logger
	agent  *client.Client
}

// Stop escalation: each step waits this long for QEMU to exit (within the
// caller's context) before the next, harder one.
const (
	shutdownWait = 10 * time.Second // the guest syncs and powers off
	quitWait     = 3 * time.Second  // QMP quit
	killWait     = 5 * time.Second  // SIGKILL
	// agentAttempt is WaitReady's first per-attempt bound (see client.WaitReady).
	agentAttempt = 5 * time.Second
)

// Start runs QEMU for spec in a session of its own (so that it outlives the
// daemon), in the network namespace spec.NetNS when set. It returns once
// QEMU runs; WaitReady waits for the guest.
func Start(ctx context.Context, spec VMSpec, log *slog.Logger) (*VM, error) {
	if err := os.MkdirAll(spec.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("vm dir: %w", err)
	}
	removeRuntimeFiles(spec)
	logf, err := os.OpenFile(filepath.Join(spec.Dir, "qemu.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("qemu log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(spec.QEMU, QEMUArgs(spec)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := startIn(cmd, spec.NetNS); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.QEMU, err)
	}
	agent, err := client.New(spec.AgentSocket())
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	v := &VM{spec: spec, pid: cmd.Process.Pid, kill: cmd.Process.Kill, exited: make(chan struct{}), log: log, agent: agent}
	go func() {
		_ = cmd.Wait()
		close(v.exited)
	}()
	log.InfoContext(ctx, "vm started", "name", spec.Name, "pid", cmd.Process.Pid, "accel", spec.Accel,
		"vcpus", spec.VCPUs, "memory_mib", spec.MemoryMiB, "kernel", spec.Kernel)
	return v, nil
}

// startIn starts cmd in the network namespace pinned at netns ("" : the
// daemon's). The fork happens on a thread that joined netns and is never
// handed back to the Go scheduler: it ends with its goroutine.
func startIn(cmd *exec.Cmd, netns string) error {
	if netns == "" {
		return cmd.Start()
	}
	f, err := os.Open(netns)
	if err != nil {
		return fmt.Errorf("open network namespace: %w", err)
	}
	defer f.Close()
	return osthread.Run(func() error {
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("join network namespace %s: %w", netns, err)
		}
		return cmd.Start()
	})
}

// PID is QEMU's process id.
func (v *VM) PID() int { return v.pid }

// Agent is the client of the VM's agent.
func (v *VM) Agent() *client.Client { return v.agent }

// Exited is closed once QEMU has exited.
func (v *VM) Exited() <-chan struct{} { return v.exited }

// WaitReady waits until the agent answers Health: the guest has booted.
// QEMU exiting first is an error that quotes its log.
func (v *VM) WaitReady(ctx context.Context) (*api.HealthResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-v.exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	h, err := v.agent.WaitReady(ctx, agentAttempt)
	select {
	case <-v.exited:
		return nil, fmt.Errorf("qemu exited before the agent answered: %s", v.qemuLog())
	default:
	}
	return h, err
}

// Stop stops the VM: the agent's Shutdown (a clean power-off), then QMP
// quit, then SIGKILL, each bounded, all within ctx. Then it removes the
// VM's sockets and pid file. Idempotent.
func (v *VM) Stop(ctx context.Context) error {
	defer func() { _ = v.agent.Close() }()
	defer removeRuntimeFiles(v.spec)
	steps := []struct {
		name string
		wait time.Duration
		do   func(context.Context) error
	}{
		{"agent shutdown", shutdownWait, v.agent.Shutdown},
		{"qmp quit", quitWait, func(ctx context.Context) error { return qmpExecute(ctx, v.spec.QMPSocket(), "quit") }},
		{"sigkill", killWait, func(context.Context) error { return v.kill() }},
	}
	for _, s := range steps {
		if v.waitExit(ctx, 0) {
			return nil
		}
		sctx, cancel := context.WithTimeout(ctx, s.wait)
		err := s.do(sctx)
		if err != nil {
			v.log.DebugContext(ctx, "vm stop step failed", "step", s.name, "error", err)
		}
		exited := v.waitExit(sctx, s.wait)
		cancel()
		if exited {
			v.log.InfoContext(ctx, "vm stopped", "name", v.spec.Name, "by", s.name)
			return nil
		}
		if ctx.Err() != nil {
			break
		}
		v.log.WarnContext(ctx, "vm did not stop", "name", v.spec.Name, "step", s.name)
	}
	// Never leave QEMU behind, even when ctx ran out.
	_ = v.kill()
	if v.waitExit(context.Background(), killWait) {
		return ctx.Err()
	}
	return fmt.Errorf("qemu %d survived SIGKILL", v.PID())
}

// waitExit reports whether QEMU exits within d (0: has it exited) or ctx.
func (v *VM) waitExit(ctx context.Context, d time.Duration) bool {
	if d == 0 {
		select {
		case <-v.exited:
			return true
		default:
			return false
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-v.exited:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

func (v *VM) qemuLog() string {
	b, _ := os.ReadFile(filepath.Join(v.spec.Dir, "qemu.log"))
	b = bytes.TrimSpace(b)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	if len(b) == 0 {
		return "(qemu printed nothing)"
	}
	return string(b)
}

// removeRuntimeFiles removes what QEMU leaves in a VM's Dir.
func removeRuntimeFiles(s VMSpec) {
	for _, p := range []string{s.AgentSocket(), s.QMPSocket(), s.PIDFile()} {
		_ = os.Remove(p)
	}
}
