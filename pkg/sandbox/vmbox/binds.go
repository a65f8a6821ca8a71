package vmbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// bindAll bind-mounts each of binds under shared; on failure the ones made
// are left for the caller's unbindTree.
func bindAll(shared string, binds []Bind) error {
	for _, b := range binds {
		if err := bind(shared, b); err != nil {
			return err
		}
	}
	return nil
}

// bindOnce makes b unless its target is already a mount point.
func bindOnce(shared string, b Bind) error {
	target := filepath.Join(shared, b.Rel)
	if mounted, err := isMountPoint(target); err == nil && mounted {
		return nil
	}
	return bind(shared, b)
}

// bind mounts b.Source (recursively: a volume may hold mounts) at b.Rel
// under shared. The tree is cloned detached (open_tree), made read-only
// there when asked, then attached: its attachment is what propagates into
// virtiofsd's mount namespace, with the read-only flag already on it (a
// later remount would not propagate).
func bind(shared string, b Bind) error {
	target := filepath.Join(shared, b.Rel)
	if !strings.HasPrefix(target, filepath.Clean(shared)+"/") {
		return fmt.Errorf("bind target %q leaves the shared directory", b.Rel)
	}
	fi, err := os.Stat(b.Source)
	if err != nil {
		return fmt.Errorf("bind source: %w", err)
	}
	if err := makeTarget(target, fi.IsDir()); err != nil {
		return err
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, b.Source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("clone mount tree of %s: %w", b.Source, err)
	}
	defer unix.Close(fd)
	if b.ReadOnly {
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
			return fmt.Errorf("read-only clone of %s: %w", b.Source, err)
		}
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount %s at %s: %w", b.Source, target, err)
	}
	return nil
}

func makeTarget(target string, dir bool) error {
	if dir {
		return os.MkdirAll(target, 0o700)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// unbindTree unmounts every mount at or under dir, deepest first, then
// removes dir. It never removes anything while a mount is left under it.
func unbindTree(dir string) error {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			if err := unix.Unmount(m, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if left, err := mountsUnder(dir); err != nil || len(left) > 0 {
		return errors.Join(err, fmt.Errorf("mounts left under %s: %v", dir, left))
	}
	return os.RemoveAll(dir)
}

// mountsUnder lists the mount points at or under dir, deepest (and latest)
// first.
func mountsUnder(dir string) ([]string, error) {
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(filepath.Clean(dir)))
	if err != nil {
		return nil, err
	}
	out := make([]string, len(infos))
	for i, m := range infos {
		out[i] = m.Mountpoint
	}
	return deepestFirst(out), nil
}

// deepestFirst orders mount points (in mount order) so that each comes
// before what it is mounted on: later mounts stack on earlier ones.
func deepestFirst(mps []string) []string {
	slices.Reverse(mps)
	slices.SortStableFunc(mps, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return mps
}

func isMountPoint(p string) (bool, error) {
	ms, err := mountsUnder(p)
	if err != nil {
		return false, err
	}
	return slices.Contains(ms, filepath.Clean(p)), nil
}
