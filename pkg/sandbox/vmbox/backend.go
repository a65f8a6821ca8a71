package vmbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
)

// maxSocketPath is the longest unix socket path (sun_path less its NUL).
const maxSocketPath = 107

// Machine is what every VM of a handler boots with.
type Machine struct {
	QEMU      string
	Kernel    string // prepared (PrepareKernel)
	Initramfs string // with this cradle as /init (BuildInitramfs)
	VCPUs     int
	MemoryMiB int
	Accel     string // resolved: config.AccelKVM or config.AccelTCG
	TSCKHz    uint64
	// BootTimeout bounds StartPod's wait for the agent's first Health.
	BootTimeout time.Duration
}

// Backend implements sandbox.Backend for microVM pods: each pod is one
// QEMU process, run in the pod's network namespace, with its sockets,
// pid file and log in the pod's directory. The pod's Pid is QEMU's, so
// the engine counts QEMU against the pod's cgroup and notices its death
// across restarts. The backend keeps the VMs it started; after a restart
// it re-attaches to QEMU from the pod's fields (Attach).
type Backend struct {
	log     *slog.Logger
	machine Machine

	mu  sync.Mutex
	vms map[string]*VM // by pod id: the VMs this daemon started
}

var _ sandbox.Backend = (*Backend)(nil)

// NewBackend makes the backend of one vm handler.
func NewBackend(log *slog.Logger, m Machine) *Backend {
	return &Backend{log: log, machine: m, vms: map[string]*VM{}}
}

// spec is the VMSpec of pod's VM.
func (b *Backend) spec(pod *sandbox.Pod) VMSpec {
	m := b.machine
	return VMSpec{
		Name: "cradle-pod-" + pod.ID[:min(12, len(pod.ID))], QEMU: m.QEMU, Kernel: m.Kernel, Initramfs: m.Initramfs,
		VCPUs: m.VCPUs, MemoryMiB: m.MemoryMiB, Accel: m.Accel, TSCKHz: m.TSCKHz,
		Dir: pod.Dir, NetNS: pod.NetNS,
	}
}

// StartPod boots the pod's VM and waits (at most BootTimeout) until its
// agent answers Health. A VM that does not become healthy is stopped.
func (b *Backend) StartPod(ctx context.Context, pod *sandbox.Pod) error {
	spec := b.spec(pod)
	for _, p := range []string{spec.AgentSocket(), spec.QMPSocket()} {
		if len(p) > maxSocketPath {
			return fmt.Errorf("VM socket path %s is %d bytes, longer than a unix socket path can be (%d): use a shorter state directory: %w",
				p, len(p), maxSocketPath, errdefs.ErrFailedPrecondition)
		}
	}
	start := time.Now()
	vm, err := Start(ctx, spec, b.log)
	if err != nil {
		return fmt.Errorf("start the pod's VM: %w", err)
	}
	bctx, cancel := context.WithTimeout(ctx, b.machine.BootTimeout)
	defer cancel()
	h, err := vm.WaitReady(bctx)
	if err == nil {
		pod.PidStart, err = sandbox.ProcessStart(vm.PID())
	}
	if err != nil {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
		defer scancel()
		return errors.Join(fmt.Errorf("boot the pod's VM: %w", err), vm.Stop(sctx))
	}
	pod.Pid = vm.PID()
	b.mu.Lock()
	b.vms[pod.ID] = vm
	b.mu.Unlock()
	b.log.Info("pod VM ready", "pod", pod.ID, "pid", pod.Pid, "took", time.Since(start),
		"accel", spec.Accel, "guest_kernel", h.KernelRelease)
	return nil
}

// stopTimeout bounds a stop that its caller did not bound: the sum of Stop's
// escalation steps.
const stopTimeout = shutdownWait + quitWait + killWait + time.Second

// StopPod shuts the pod's VM down (agent Shutdown, then QMP quit, then
// SIGKILL) and removes its sockets and pid file. Idempotent.
func (b *Backend) StopPod(ctx context.Context, pod *sandbox.Pod) error {
	b.mu.Lock()
	vm := b.vms[pod.ID]
	b.mu.Unlock()
	if vm == nil {
		var err error
		if vm, err = Attach(b.spec(pod), pod.Pid, pod.PidStart, b.log); err != nil {
			return fmt.Errorf("attach to the pod's VM: %w", err)
		}
	}
	if err := vm.Stop(ctx); err != nil {
		return fmt.Errorf("stop the pod's VM: %w", err)
	}
	b.mu.Lock()
	delete(b.vms, pod.ID)
	b.mu.Unlock()
	return nil
}

// DeletePod stops the VM as StopPod does, from the pod's fields alone (the
// engine removes the pod's directory). Idempotent.
func (b *Backend) DeletePod(ctx context.Context, pod *sandbox.Pod) error {
	return b.StopPod(ctx, pod)
}
