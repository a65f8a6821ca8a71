//go:build !guest

package main

import (
	"context"
	"debug/elf"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/vmbox"
)

// vmBootTimeout bounds a pod VM's boot, up to its agent's first Health
// (about 2 s under TCG on a small host, more with many booting at once).
const vmBootTimeout = 90 * time.Second

// vmBackends prepares, once at start-up, what the VMs of each vm handler
// boot (the guest kernel, cached under <root>/vm/kernels, and an initramfs
// around the guest agent built into this binary, cached under <root>/vm) and returns a
// backend per handler that is ready. A handler that is not gets its Problem
// in handlers and no backend. Each handler's Accel records the acceleration
// in use and why. Each backend starts building its VM template; the
// closers wait for those builds (they end with ctx).
func vmBackends(ctx context.Context, cfg config.Config, handlers []sandbox.Handler, taps sandbox.Taps, log *slog.Logger) (map[string]sandbox.Backend, []func() error) {
	out := map[string]sandbox.Backend{}
	var closers []func() error
	var tsc uint64
	tscDone := false
	for i := range handlers {
		h := &handlers[i]
		hc := cfg.Runtime.Handlers[h.Name]
		if h.Kind != config.KindVM || h.Problem != "" || hc.VM == nil {
			continue
		}
		accel := vmbox.ResolveAccel(hc.VM.Accel, "/dev/kvm", "/sys")
		h.Accel = accel.Mode + " (" + accel.Reason + ")"
		if accel.Mode == config.AccelTCG && !tscDone {
			khz, src, err := vmbox.HostTSCKHz()
			if err != nil {
				log.Warn("host TSC rate unknown: TCG guests calibrate their own and may hang", "error", err)
			}
			tsc, tscDone = khz, true
			log.Info("host TSC rate", "khz", khz, "source", src)
		}
		start := time.Now()
		m, err := prepareVM(ctx, cfg.Root, h.Binary, *hc.VM)
		if err != nil {
			h.Problem = err.Error()
			log.Error("vm handler cannot run pods", "handler", h.Name, "error", err)
			continue
		}
		m.Accel, m.TSCKHz = accel.Mode, tsc
		if m.Templates != "" {
			m.Templates = filepath.Join(m.Templates, h.Name) // each handler prunes its own
		}
		log.Info("vm handler prepared", "handler", h.Name, "took", time.Since(start), "accel", accel.Mode,
			"accel_reason", accel.Reason, "kernel", m.Kernel, "initramfs", m.Initramfs)
		b := vmbox.NewBackend(log.With("component", "vmbox", "handler", h.Name), m, taps)
		b.StartTemplates(ctx)
		out[h.Name] = b
		closers = append(closers, b.Close)
	}
	return out, closers
}

// prepareVM prepares the kernel and the initramfs of one vm handler.
func prepareVM(ctx context.Context, root, qemu string, c config.VM) (vmbox.Machine, error) {
	agent, err := writeGuestAgent(filepath.Join(root, "vm"))
	if err != nil {
		return vmbox.Machine{}, err
	}
	if err := requireStatic(agent); err != nil {
		return vmbox.Machine{}, err
	}
	src := c.Kernel
	if src == "" {
		if src, err = vmbox.DefaultKernel(vmbox.KernelRoots...); err != nil {
			return vmbox.Machine{}, err
		}
	}
	k, err := vmbox.PrepareKernel(ctx, filepath.Join(root, "vm", "kernels"), src)
	if err != nil {
		return vmbox.Machine{}, fmt.Errorf("prepare guest kernel %s: %w", src, err)
	}
	if _, err := os.Stat(c.Virtiofsd); err != nil {
		return vmbox.Machine{}, fmt.Errorf("virtiofsd (shares container roots with pod VMs): %w (apt-get install qemu-system-common)", err)
	}
	initrd, err := vmbox.BuildInitramfs(ctx, filepath.Join(root, "vm"), vmbox.InitramfsSpec{
		Agent: agent, ModulesDir: vmbox.ModulesDir(src, k.Release), Modules: vmbox.GuestModules(),
		Runtime: c.GuestRuntime,
	})
	if err != nil {
		return vmbox.Machine{}, fmt.Errorf("build the guest initramfs: %w", err)
	}
	return vmbox.Machine{QEMU: qemu, Kernel: k.Path, CmdlineDevices: k.CmdlineDevices, Initramfs: initrd, VCPUs: c.VCPUs, MemoryMiB: c.MemoryMiB,
		Virtiofsd: c.Virtiofsd, BootTimeout: vmBootTimeout, Templates: templatesDir(root, c, vmbox.Has9P(src, k.Release))}, nil
}

// requireStatic fails for a dynamically linked agent: it cannot be /init
// of a guest that has no libc.
func requireStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("read the guest agent: %w", err)
	}
	defer func() { _ = f.Close() }()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked and cannot be the guest's init: build cradle with make build (CGO_ENABLED=0)", path)
		}
	}
	return nil
}

// templatesDir is where a vm handler's VM templates are kept ("" : off,
// as configured or because its guest kernel cannot mount a clone's shared
// directory over 9p).
func templatesDir(root string, c config.VM, has9P bool) string {
	if c.ColdBoot || !has9P {
		return ""
	}
	return filepath.Join(root, "vm", "templates")
}
