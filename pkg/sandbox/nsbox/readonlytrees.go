package nsbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/containerd/containerd/v2/core/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// readOnlyTreesDir is where, in a container's bundle, the trees of its
// recursive read-only mounts are attached.
const readOnlyTreesDir = "rro"

// makeReadOnlyTrees gives a runtime without the "rro" mount option (crun
// 1.8) recursive read-only mounts: each mount of spec with "rro" gets a
// copy of its source's whole tree, made read-only mount by mount
// (mount_setattr(2) with AT_RECURSIVE) while still detached, then attached
// under the bundle; the mount then binds that tree with plain "ro". A bind
// copies each mount's flags, so every submount stays read-only in the
// container, as "rro" makes it. The tree is never attached writable, so
// nothing that walks the bundle (its removal) can write to the source.
// The tree's propagation is private: mounts made under the source later
// do not appear in it (CRI asks rro mounts for private propagation).
// On failure the trees made so far are released.
func makeReadOnlyTrees(spec *specs.Spec, bundle string) (err error) {
	if spec == nil {
		return nil
	}
	dir := filepath.Join(bundle, readOnlyTreesDir)
	defer func() {
		if err != nil {
			err = errors.Join(err, releaseReadOnlyTrees(bundle))
		}
	}()
	for i := range spec.Mounts {
		m := &spec.Mounts[i]
		at := slices.Index(m.Options, "rro")
		if at < 0 {
			continue
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		target := filepath.Join(dir, strconv.Itoa(i))
		if err := attachReadOnlyTree(m.Source, target); err != nil {
			return fmt.Errorf("recursive read-only mount of %s at %s: %w", m.Source, m.Destination, err)
		}
		m.Source = target
		m.Options = slices.Clone(m.Options)
		m.Options[at] = "ro"
		if !slices.Contains(m.Options, "rbind") {
			m.Options = append(m.Options, "rbind")
		}
	}
	return nil
}

// attachReadOnlyTree attaches at target (made, a directory or a file as
// source is) a read-only copy of the tree of mounts at source.
func attachReadOnlyTree(source, target string) error {
	fi, err := os.Stat(source)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		err = os.Mkdir(target, 0o700)
	} else {
		err = os.WriteFile(target, nil, 0o600)
	}
	if err != nil {
		return err
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("open_tree: %w", err)
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY, Propagation: unix.MS_PRIVATE}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		return fmt.Errorf("mount_setattr: %w", err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

// releaseReadOnlyTrees detaches the trees makeReadOnlyTrees attached in
// bundle and removes their mount points, never walking into a mount.
func releaseReadOnlyTrees(bundle string) error {
	dir := filepath.Join(bundle, readOnlyTreesDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		// Detaching a tree's top mount detaches the whole tree.
		if err := mount.UnmountAll(p, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("detach the read-only tree %s: %w", p, err)
		}
		// Remove, not RemoveAll: a mount point left behind fails here.
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return os.Remove(dir)
}
