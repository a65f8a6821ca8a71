package vmbox

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/agent/api"
	"github.com/cradle-runtime/cradle/pkg/cleanup"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
)

// maxSocketPath is the longest unix socket path (sun_path less its NUL).
const maxSocketPath = 107

// Machine is what every VM of a handler boots with.
type Machine struct {
	QEMU   string
	Kernel string // prepared (PrepareKernel)
	// CmdlineDevices is the prepared kernel's (Kernel.CmdlineDevices).
	CmdlineDevices bool
	Initramfs      string // with this cradle as /init (BuildInitramfs)
	VCPUs          int
	MemoryMiB      int
	Accel          string // resolved: config.AccelKVM or config.AccelTCG
	TSCKHz         uint64
	// Virtiofsd shares each pod's directory with its VM ("" : no shared
	// directory, hence no containers; boot tests).
	Virtiofsd string
	// BootTimeout bounds StartPod's wait for the agent's first Health.
	BootTimeout time.Duration
	// Templates, when set, is where the handler's VM templates are kept:
	// pods' VMs are then clones of a template of their shape
	// (template.go), their shared directory on virtio-9p. "": every VM
	// boots cold.
	Templates string
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
	taps    sandbox.Taps // the pod network's side of the VM's NIC

	templates *templates // nil: off

	mu  sync.Mutex
	vms map[string]*VM // by pod id: the VMs this daemon started
}

var _ sandbox.Backend = (*Backend)(nil)

// NewBackend makes the backend of one vm handler; taps is the network
// seam's part that makes the VM's NIC.
func NewBackend(log *slog.Logger, m Machine, taps sandbox.Taps) *Backend {
	return &Backend{log: log, machine: m, taps: taps, templates: newTemplates(m.Templates), vms: map[string]*VM{}}
}

// tapName is the pod VM's tap device, in the pod's network namespace.
const tapName = "tap0"

// spec is the VMSpec of pod's VM.
func (b *Backend) spec(pod *sandbox.Pod) VMSpec {
	m := b.machine
	vcpus, mem := b.size(pod)
	s := VMSpec{
		Name: "cradle-pod-" + pod.ID[:min(12, len(pod.ID))], QEMU: m.QEMU, Kernel: m.Kernel, Initramfs: m.Initramfs,
		VCPUs: vcpus, MemoryMiB: mem, Accel: m.Accel, TSCKHz: m.TSCKHz,
		Dir: pod.Dir, NetNS: pod.NetNS, VirtioFS: m.Virtiofsd != "", CmdlineDevices: m.CmdlineDevices,
	}
	if pod.NetNS != "" {
		s.Tap, s.MAC = tapName, guestMAC(pod.ID)
	}
	return s
}

// guestMAC is the address QEMU gives the guest NIC until the agent takes
// eth0's (JoinNetwork): locally administered, from the pod id.
func guestMAC(id string) string {
	b := []byte{0x02, 0, 0, 0, 0, 0}
	copy(b[1:], id)
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5])
}

// checkPod refuses what a VM cannot give a pod: the node's network, PID or
// IPC namespace (the guest has its own kernel).
func checkPod(pod *sandbox.Pod) error {
	c := pod.Config
	if pod.NetNS == "" || c.Network == ctrconfig.NamespaceNode || c.PID == ctrconfig.NamespaceNode || c.IPC == ctrconfig.NamespaceNode {
		return fmt.Errorf("a microVM pod cannot share the node's network, PID or IPC namespace: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// StartPod boots the pod's VM: the pod's shared directory and its
// virtiofsd, a tap in the pod's network namespace, then QEMU; it waits (at
// most BootTimeout) until the agent answers Health and has set the pod up
// in the guest. On failure nothing is left.
func (b *Backend) StartPod(ctx context.Context, pod *sandbox.Pod) (retErr error) {
	if err := checkPod(pod); err != nil {
		return err
	}
	spec := b.spec(pod)
	for _, p := range []string{spec.AgentSocket(), spec.QMPSocket(), spec.VirtioFSSocket()} {
		if len(p) > maxSocketPath {
			return fmt.Errorf("VM socket path %s is %d bytes, longer than a unix socket path can be (%d): use a shorter state directory: %w",
				p, len(p), maxSocketPath, errdefs.ErrFailedPrecondition)
		}
	}
	start := time.Now()
	var undo cleanup.Stack
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, undo.Run())
		}
	}()
	undo.Push(func(context.Context) error { return b.release(pod, spec) })
	vm, err := b.startVM(ctx, pod, spec)
	if err != nil {
		return err
	}
	undo.Push(func(ctx context.Context) error { return vm.Stop(ctx) })
	h, err := b.boot(ctx, pod, vm)
	if err != nil {
		return err
	}
	pod.Pid = vm.PID()
	b.mu.Lock()
	b.vms[pod.ID] = vm
	b.mu.Unlock()
	undo.Release()
	b.log.InfoContext(ctx, "pod VM ready", "pod", pod.ID, "pid", pod.Pid, "took", time.Since(start),
		"from_template", vm.spec.templated(), "accel", spec.Accel, "vcpus", spec.VCPUs, "memory_mib", spec.MemoryMiB,
		"guest_kernel", h.KernelRelease)
	return nil
}

// startVM makes what QEMU needs, the tap and the shared directory, and
// starts the pod's VM: a clone of the template of its shape when
// templates are on and one can be had, else a cold boot with a virtiofsd
// for the shared directory (its pid joins pod.AuxPids).
func (b *Backend) startVM(ctx context.Context, pod *sandbox.Pod, spec VMSpec) (*VM, error) {
	if spec.Tap != "" {
		if err := b.taps.CreateTap(spec.NetNS, spec.Tap); err != nil {
			return nil, err
		}
	}
	if spec.VirtioFS {
		if err := makeShared(SharedDir(pod)); err != nil {
			return nil, fmt.Errorf("the pod's shared directory: %w", err)
		}
	}
	if b.templates != nil && spec.VirtioFS {
		clone := spec
		clone.VirtioFS, clone.Shared9P = false, SharedDir(pod)
		if vm, ok := b.startFromTemplate(ctx, clone); ok {
			return vm, nil
		}
	}
	if spec.VirtioFS {
		pid, err := startVirtiofsd(ctx, b.machine.Virtiofsd, SharedDir(pod), spec)
		if err != nil {
			return nil, err
		}
		pod.AuxPids = []int{pid}
	}
	vm, err := Start(ctx, spec, b.log)
	if err != nil {
		return nil, fmt.Errorf("start the pod's VM: %w", err)
	}
	return vm, nil
}

// boot waits for the agent and has it set the pod up in the guest.
func (b *Backend) boot(ctx context.Context, pod *sandbox.Pod, vm *VM) (*api.HealthResponse, error) {
	bctx, cancel := context.WithTimeout(ctx, b.machine.BootTimeout)
	defer cancel()
	start := time.Now()
	h, err := vm.WaitReady(bctx)
	if err != nil {
		return nil, fmt.Errorf("boot the pod's VM: %w", err)
	}
	healthy := time.Since(start)
	if pod.PidStart, err = sandbox.ProcessStart(vm.PID()); err != nil {
		return nil, err
	}
	entropy := make([]byte, 64)
	if _, err := rand.Read(entropy); err != nil {
		return nil, fmt.Errorf("entropy for the pod's VM: %w", err)
	}
	req := &api.SetupSandboxRequest{Hostname: pod.Config.Hostname, Sysctls: pod.Config.Sysctls,
		HostTimeUnixNs: time.Now().UnixNano(), Entropy: entropy}
	switch {
	case vm.spec.templated():
		req.SharedTag, req.SharedFs = api.SharedTag, "9p"
	case vm.spec.VirtioFS:
		req.SharedTag = api.SharedTag
	}
	err = vm.Agent().Call(bctx, func(s api.AgentService) error {
		_, err := s.SetupSandbox(bctx, req)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("set the pod up in its VM: %w", err)
	}
	// Where a boot's time goes: to the agent's first Health (the guest's
	// own uptime then: kernel and agent start), then the pod's set-up.
	b.log.DebugContext(ctx, "pod VM booted", "pod", pod.ID, "to_health", healthy,
		"guest_uptime", time.Duration(h.UptimeNs), "setup", time.Since(start)-healthy)
	return h, nil
}

// JoinNetwork wires the VM's tap to the pod's eth0 and has the guest take
// eth0's place: its MAC, MTU, addresses and routes.
func (b *Backend) JoinNetwork(ctx context.Context, pod *sandbox.Pod) error {
	tap, err := b.taps.WireTap(pod.NetNS, tapName)
	if err != nil {
		return err
	}
	mac := guestMAC(pod.ID)
	b.mu.Lock()
	if vm := b.vms[pod.ID]; vm != nil && vm.spec.templated() {
		mac = templateMAC // a clone's NIC has its template's address
	}
	b.mu.Unlock()
	req := &api.SetupNetworkRequest{Interfaces: []*api.Interface{{
		Mac: mac, NewMac: tap.MAC.String(), Name: "eth0", Mtu: int32(tap.MTU), Addresses: tap.Addrs,
	}}}
	for _, r := range tap.Routes {
		req.Routes = append(req.Routes, &api.Route{Destination: r.Dst, Gateway: r.Gw, Device: "eth0"})
	}
	return b.call(ctx, pod, func(s api.AgentService) error {
		_, err := s.SetupNetwork(ctx, req)
		return err
	})
}

// StopPod shuts the pod's VM down (agent Shutdown, then QMP quit, then
// SIGKILL), then its virtiofsd, and removes their sockets and pid file.
// Idempotent.
func (b *Backend) StopPod(ctx context.Context, pod *sandbox.Pod) error {
	b.mu.Lock()
	vm := b.vms[pod.ID]
	b.mu.Unlock()
	spec := b.spec(pod)
	if vm == nil {
		var err error
		if vm, err = Attach(spec, pod.Pid, pod.PidStart, b.log); err != nil {
			return fmt.Errorf("attach to the pod's VM: %w", err)
		}
	}
	if err := vm.Stop(ctx); err != nil {
		return fmt.Errorf("stop the pod's VM: %w", err)
	}
	b.mu.Lock()
	delete(b.vms, pod.ID)
	b.mu.Unlock()
	return stopVirtiofsd(spec)
}

// DeletePod stops the VM as StopPod does, then releases what StartPod
// made, from the pod's fields alone (after a crash mid-boot Pid may be 0:
// QEMU is found by its pid file). Idempotent.
func (b *Backend) DeletePod(ctx context.Context, pod *sandbox.Pod) error {
	if err := b.StopPod(ctx, pod); err != nil {
		return err
	}
	return b.release(pod, b.spec(pod))
}

// release removes the shared directory (every bind under it first: it
// never removes files under a mount) and the tap.
func (b *Backend) release(pod *sandbox.Pod, spec VMSpec) error {
	errs := []error{stopVirtiofsd(spec), unbindTree(SharedDir(pod))}
	if spec.Tap != "" {
		if err := b.taps.DetachTap(spec.NetNS, spec.Tap); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
