package vmbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"golang.org/x/sys/unix"
)

// SharedDir is the pod's directory that virtiofsd serves to its VM: the
// container code binds roots, volumes and the log directory under it.
func SharedDir(pod *sandbox.Pod) string { return filepath.Join(pod.Dir, "shared") }

// makeShared makes dir a mount point of its own with shared propagation,
// so that what is mounted under it later reaches virtiofsd's mount
// namespace (which virtiofsd makes a slave of ours).
func makeShared(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if mounted, err := isMountPoint(dir); err != nil {
		return err
	} else if !mounted {
		if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", dir, err)
		}
	}
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	return nil
}

// socketWait bounds how long virtiofsd may take to listen.
const socketWait = 10 * time.Second

// startVirtiofsd serves shared on spec's VirtioFSSocket, in a session of
// its own (it outlives a daemon restart; it exits by itself when QEMU
// disconnects). It returns once the socket is there.
func startVirtiofsd(ctx context.Context, bin, shared string, spec VMSpec) (int, error) {
	logf, err := os.OpenFile(filepath.Join(spec.Dir, "virtiofsd.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, fmt.Errorf("virtiofsd log: %w", err)
	}
	defer logf.Close()
	_ = os.Remove(spec.VirtioFSSocket())
	cmd := exec.Command(bin, "--socket-path="+spec.VirtioFSSocket(), "-o", "source="+shared,
		"-o", "cache=auto", "-o", "sandbox=namespace", "-o", "announce_submounts", "-o", "no_posix_lock",
		"-o", "log_level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	deadline := time.NewTimer(socketWait)
	defer deadline.Stop()
	for {
		if _, err := os.Stat(spec.VirtioFSSocket()); err == nil {
			return cmd.Process.Pid, nil
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(spec.Dir, "virtiofsd.log"))
			return 0, fmt.Errorf("virtiofsd exited: %s", bytes.TrimSpace(b))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return 0, ctx.Err()
		case <-deadline.C:
			_ = cmd.Process.Kill()
			return 0, fmt.Errorf("virtiofsd did not listen on %s within %v", spec.VirtioFSSocket(), socketWait)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// virtiofsdWait is how long a virtiofsd gets to exit after SIGTERM.
const virtiofsdWait = 2 * time.Second

// stopVirtiofsd ends the virtiofsd serving spec, found by the socket on
// its command line (it needs no memory of ours: after a crash a pid file
// may not have been written). It has usually exited with QEMU already.
func stopVirtiofsd(spec VMSpec) error {
	pids := processesNaming([]byte("--socket-path=" + spec.VirtioFSSocket() + "\x00"))
	var errs []error
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // gone
		}
		_ = unix.PidfdSendSignal(fd, unix.SIGTERM, nil, 0)
		p := &pidfd{fd: fd}
		done := make(chan struct{})
		go func() { p.wait(); close(done) }()
		select {
		case <-done:
			continue
		case <-time.After(virtiofsdWait):
		}
		if err := p.kill(); err != nil {
			errs = append(errs, err)
		}
		select {
		case <-done:
		case <-time.After(killWait):
			errs = append(errs, fmt.Errorf("virtiofsd %d survived SIGKILL", pid))
		}
	}
	_ = os.Remove(spec.VirtioFSSocket())
	// virtiofsd's lock of its socket path, left behind when it was killed.
	_ = os.Remove(filepath.Join("/run/virtiofsd", strings.ReplaceAll(spec.VirtioFSSocket(), "/", ".")+".pid"))
	return errors.Join(errs...)
}

// processesNaming lists the processes whose command line contains each
// of args.
func processesNaming(args ...[]byte) []int {
	ms, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var out []int
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err != nil || slices.ContainsFunc(args, func(a []byte) bool { return !bytes.Contains(b, a) }) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(m))); err == nil {
			out = append(out, pid)
		}
	}
	return out
}
