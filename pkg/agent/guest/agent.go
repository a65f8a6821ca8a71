// Package guest is cradle's in-guest agent: `cradle agent`, PID 1 of a
// microVM's initramfs. It mounts the kernel filesystems, loads the modules
// the initramfs carries, finds its virtio-serial port and serves the Agent
// API over it, one host session after another.
package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Options configure Run.
type Options struct {
	Version  string
	PortName string // the virtserialport name to serve on
	Runtime  string // the OCI runtime binary (api.GuestRuntime)
	Log      *slog.Logger
}

// portWait bounds how long the port may take to appear after the modules
// load (virtio-mmio probing and the port's name handshake with QEMU).
const portWait = 30 * time.Second

// Run is the agent's life as PID 1: it never returns while the guest is
// healthy; on a fatal error it logs, syncs and powers the VM off (PID 1
// exiting would panic the kernel).
func Run(ctx context.Context, o Options) error {
	log := o.Log
	err := run(ctx, o)
	log.Error("agent stopping", "error", err)
	if os.Getpid() == 1 {
		powerOff(log)
	}
	return err
}

func run(ctx context.Context, o Options) error {
	log := o.Log
	if os.Getpid() == 1 {
		if err := setupPID1(log); err != nil {
			return err
		}
	}
	reaper, err := NewReaper(log)
	if err != nil {
		return err
	}
	go reaper.Run(ctx)
	rt, err := NewRuntime(pid1RuntimeConfig(o.Runtime), reaper, log)
	if err != nil {
		return err
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	release := unix.ByteSliceToString(u.Release[:])
	start := time.Now()
	mods, err := loadModules(filepath.Join("/lib/modules", release))
	if err != nil {
		return err
	}
	log.Info("modules loaded", "modules", len(mods), "took", time.Since(start))
	port, err := findPort(ctx, o.PortName, portWait)
	if err != nil {
		return err
	}
	log.Info("serving", "port", port, "release", release)
	svc := &Service{Version: o.Version, Log: log, PowerOff: func() { powerOff(log) }, Runtime: rt}
	for ctx.Err() == nil {
		// The port is opened once per host session: closing it discards
		// what the guest has not read, so a new session starts clean.
		f, err := os.OpenFile(port, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", port, err)
		}
		if err := waitHost(ctx, f); err != nil {
			f.Close()
			return err
		}
		logSessionEnd(log, ServeSession(ctx, f, svc, svc))
	}
	return ctx.Err()
}

// findPort waits for the virtio-serial port called name and returns its
// device node (devtmpfs makes /dev/vportNpM as the port appears).
func findPort(ctx context.Context, name string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		ds, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, d := range ds {
			b, err := os.ReadFile(d)
			if err == nil && strings.TrimSpace(string(b)) == name {
				dev := filepath.Join("/dev", filepath.Base(filepath.Dir(d)))
				if _, err := os.Stat(dev); err == nil {
					return dev, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no virtio-serial port named %q after %v (ports: %v)", name, wait, ds)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// waitHost returns once a host is connected to the port: a virtio console
// port polls POLLHUP while its host side is closed, and reads then return
// EOF at once, which would spin a session loop.
func waitHost(ctx context.Context, f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for {
		var perr error
		var hup bool
		if err := rc.Control(func(fd uintptr) {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			_, perr = unix.Poll(fds, 0)
			hup = fds[0].Revents&unix.POLLHUP != 0
		}); err != nil {
			return err
		}
		if perr != nil && !errors.Is(perr, unix.EINTR) {
			return fmt.Errorf("poll %s: %w", f.Name(), perr)
		}
		if perr == nil && !hup {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// powerOff ends the VM with a reboot, not a power-off: the guest's
// reboot=t makes it a triple fault, which QEMU's -no-reboot turns into its
// exit on any microvm, whereas a power-off needs ACPI, which the VMs of the
// minimal kernel have not (its CPU would halt and QEMU run on).
func powerOff(log *slog.Logger) {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		log.Error("power off", "error", err)
	}
}

// KmsgWriter writes each Write as one kernel log record (/dev/kmsg), so the
// agent's log lands in the guest's console and dmesg. It falls back to w.
func KmsgWriter(fallback io.Writer) io.Writer {
	f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		return fallback
	}
	return f
}
