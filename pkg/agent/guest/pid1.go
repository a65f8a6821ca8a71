package guest

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// What PID 1 of the initramfs does before anything else: it leaves the
// rootfs, mounts the kernel filesystems and cgroup2 with every controller
// handed down, and makes the directories crun and the agent use.

// bootMount is one filesystem PID 1 mounts.
type bootMount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

// bootMounts are mounted in order after the root has moved.
func bootMounts() []bootMount {
	const common = unix.MS_NOSUID | unix.MS_NODEV
	return []bootMount{
		{"proc", "/proc", "proc", common | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", common | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"},
		{"tmpfs", "/run", "tmpfs", common, "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", common, "mode=1777"},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", common | unix.MS_NOEXEC, ""},
	}
}

// setupPID1 prepares the guest; only PID 1 calls it.
func setupPID1(log *slog.Logger) error {
	if err := leaveRootfs(); err != nil {
		return err
	}
	for _, m := range bootMounts() {
		if err := mountOnce(m); err != nil {
			return err
		}
	}
	if err := linkPtmx(); err != nil {
		return err
	}
	enabled, err := enableControllers("/sys/fs/cgroup")
	if err != nil {
		log.Warn("cgroup controllers: containers' limits may not hold", "error", err)
	}
	log.Info("cgroup controllers enabled", "controllers", enabled)
	return nil
}

// leaveRootfs makes the root a bind mount of itself moved over / and
// chroots into it. pivot_root(2) refuses to move the initramfs' rootfs
// (EINVAL), so crun could not pivot into a container's root from it; from
// a bind mount it can. The same as
//
//	mkdir /x; mount --rbind / /x; cd /x; mount --move . /; chroot .
func leaveRootfs() error {
	const dir = "/.cradle-root"
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("leave the rootfs: %w", err)
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"bind / to " + dir, func() error { return unix.Mount("/", dir, "", unix.MS_BIND|unix.MS_REC, "") }},
		{"chdir " + dir, func() error { return unix.Chdir(dir) }},
		{"move it over /", func() error { return unix.Mount(".", "/", "", unix.MS_MOVE, "") }},
		{"chroot", func() error { return unix.Chroot(".") }},
		{"chdir /", func() error { return unix.Chdir("/") }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("leave the rootfs: %s: %w", s.what, err)
		}
	}
	// The directory is empty in the new root: the mount moved away.
	_ = os.Remove(dir)
	return nil
}

// mountOnce mounts m; something mounted there already (a second start) is
// fine.
func mountOnce(m bootMount) error {
	if err := os.MkdirAll(m.target, 0o755); err != nil {
		return err
	}
	err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data)
	if err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
	}
	return nil
}

// linkPtmx points /dev/ptmx at the devpts instance's ptmx (devpts.rst's
// advice for newinstance mounts): openpty in the agent then works like in
// the containers.
func linkPtmx() error {
	if target, err := os.Readlink("/dev/ptmx"); err == nil && target == "pts/ptmx" {
		return nil
	}
	if err := os.Remove("/dev/ptmx"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replace /dev/ptmx: %w", err)
	}
	if err := os.Symlink("pts/ptmx", "/dev/ptmx"); err != nil {
		return fmt.Errorf("link /dev/ptmx: %w", err)
	}
	return nil
}

// enableControllers hands every controller the cgroup2 root has down to
// its children (cgroup.subtree_control), one at a time so that one the
// kernel refuses does not hold back the others; it returns those enabled
// and why others were not.
func enableControllers(root string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("read the cgroup controllers: %w", err)
	}
	var enabled []string
	var errs []error
	for _, c := range strings.Fields(string(b)) {
		err := os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("+"+c), 0)
		if err != nil {
			errs = append(errs, fmt.Errorf("enable the %s controller: %w", c, err))
			continue
		}
		enabled = append(enabled, c)
	}
	return enabled, errors.Join(errs...)
}
