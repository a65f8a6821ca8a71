package guest

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// unifiedMount is where a hybrid host mounts cgroup2 beside the v1
// controllers.
const unifiedMount = "/sys/fs/cgroup/unified"

// hiddenEnv marks the test process that runs with the unified mount hidden.
const hiddenEnv = "CRADLE_GUEST_TEST_V1_VIEW"

// TestMain runs the package's tests, on a hybrid cgroup host (this
// project's CI machines) as root from a mount namespace of their own where
// the cgroup2 mount beside the v1 controllers is hidden: crun 1.8 refuses
// hybrid layouts, and the guest, pure cgroup2, never has one. crun then
// sees a v1 host, where the limits live on such a host anyway.
func TestMain(m *testing.M) {
	if err := hideUnified(); err != nil {
		fmt.Fprintf(os.Stderr, "guest tests: cannot hide %s from crun: %v\n", unifiedMount, err)
	}
	os.Exit(m.Run())
}

// hideUnified re-executes the test binary in a new mount namespace (a
// slave of the host's) without the unified mount, when that is needed and
// possible; it returns only when it is not (or it failed).
func hideUnified() error {
	if os.Geteuid() != 0 || os.Getenv(hiddenEnv) != "" || !hybridCgroups() {
		return nil
	}
	// The namespace is the thread's; execve keeps the calling thread's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make / a slave: %w", err)
	}
	if err := unix.Unmount(unifiedMount, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return syscall.Exec(exe, os.Args, append(os.Environ(), hiddenEnv+"=1"))
}

// hybridCgroups reports whether the v1 controllers sit on a tmpfs at
// /sys/fs/cgroup with cgroup2 visible at /sys/fs/cgroup/unified.
func hybridCgroups() bool {
	var root, unified unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &root) != nil || root.Type != unix.TMPFS_MAGIC {
		return false
	}
	err := unix.Statfs(unifiedMount, &unified)
	return err == nil && unified.Type == unix.CGROUP2_SUPER_MAGIC
}
