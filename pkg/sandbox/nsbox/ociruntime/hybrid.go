package ociruntime

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/osthread"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// unifiedMount is where a hybrid host mounts cgroup2 beside the v1
// controllers.
const unifiedMount = "/sys/fs/cgroup/unified"

// hybridHost reports whether the host has the hybrid cgroup layout: v1
// controllers on a tmpfs at /sys/fs/cgroup with cgroup2 at
// /sys/fs/cgroup/unified.
func hybridHost() (bool, error) {
	var root, unified unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &root); err != nil {
		return false, fmt.Errorf("statfs /sys/fs/cgroup: %w", err)
	}
	if root.Type != unix.TMPFS_MAGIC {
		return false, nil
	}
	if err := unix.Statfs(unifiedMount, &unified); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("statfs %s: %w", unifiedMount, err)
	}
	return unified.Type == unix.CGROUP2_SUPER_MAGIC, nil
}

// startInV1View starts cmd in a mount namespace of its own where the host's
// cgroup2 mount is hidden, so crun (which refuses hybrid layouts) sees a
// cgroup v1 host.
//
// The namespace is made on a fresh goroutine locked to its OS thread (never
// the main thread): unshare(CLONE_NEWNS) affects only that thread, and a
// process forked from it inherits the namespace. The goroutine returns
// without unlocking, so Go ends the thread and nothing else ever runs in
// that namespace; it lives only as long as the processes started in it.
// Only the cgroup2 mount and its parent mount are made slaves before
// cgroup2 is unmounted, so that the unmount never propagates back to the
// host; every other mount keeps its propagation: a shared mount stays a
// peer of the host's, so mount propagation (Bidirectional and
// HostToContainer volumes) works for crun's containers as for runc's. Where
// the host's / is private the namespace holds a snapshot of the host's
// private mounts: enough for crun and conmon, which need only paths that
// exist before Create, but a conmon then pins every private mount the host
// had when it started (other pods' rootfs and namespace pins) until it
// exits. New warns about that.
func startInV1View(cmd *exec.Cmd) error {
	// This thread's mount namespace will differ from the process's: it
	// must die afterwards, and never be the main thread.
	return osthread.Run(func() error { return startOnThisThread(cmd) })
}

// startOnThisThread unshares the calling thread's mount namespace, hides
// cgroup2 in it and starts cmd from it.
func startOnThisThread(cmd *exec.Cmd) error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare the mount namespace: %w", err)
	}
	parent, err := unifiedParent()
	if err != nil {
		return err
	}
	for _, p := range []string{parent, unifiedMount} {
		if err := unix.Mount("", p, "", unix.MS_SLAVE, ""); err != nil {
			return fmt.Errorf("make %s a slave mount: %w", p, err)
		}
	}
	if err := unix.Unmount(unifiedMount, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("hide %s from crun: %v: %w", unifiedMount, err, errdefs.ErrFailedPrecondition)
	}
	return cmd.Start()
}

// unifiedParent is parentMount(unifiedMount), read once: the host's
// layout does not change, and mountinfo lists every mount of the host
// (five per pod), too long to read for each container.
var unifiedParent = sync.OnceValues(func() (string, error) { return parentMount(unifiedMount) })

// parentMount is the mount point of the mount that mountpoint is mounted on.
func parentMount(mountpoint string) (string, error) {
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return "", err
	}
	byID := map[int]*mountinfo.Info{}
	var child *mountinfo.Info
	for _, m := range mounts {
		byID[m.ID] = m
		if m.Mountpoint == mountpoint {
			child = m // the last one is the visible one
		}
	}
	if child == nil || byID[child.Parent] == nil {
		return "", fmt.Errorf("no mount at %s: %w", mountpoint, errdefs.ErrFailedPrecondition)
	}
	return byID[child.Parent].Mountpoint, nil
}

// rootShared reports whether the host's / is a shared mount: the last
// (visible) mountinfo line for / has a "shared:N" optional field.
func rootShared() (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	shared := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 || fields[4] != "/" {
			continue
		}
		shared = false
		for _, opt := range fields[6:] {
			if opt == "-" {
				break
			}
			shared = shared || strings.HasPrefix(opt, "shared:")
		}
	}
	return shared, sc.Err()
}
