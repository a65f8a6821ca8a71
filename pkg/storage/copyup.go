package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// A layer may hard-link a file that an earlier layer made: in the image's
// filesystem the link and the file are one inode. A layer applied to the
// mounted overlay gets that for free (overlayfs copies the file up, then
// links it); applied straight into the upperdir, as unpacking does, the
// target is not there and link(2) fails with ENOENT. linkTarget does what
// overlayfs would: it copies the target up from the topmost lower layer that
// shows it, then containerd's archive code links to the copy.

// lowerOf finds target (a clean relative path) in the lower directories,
// topmost first, as overlayfs shows them: a whiteout hides it, an opaque
// directory hides what lies below it, and so does an ancestor that is not a
// directory. It never follows a symlink: every component is Lstat'ed.
// It returns the lower directory that holds target, or "".
func lowerOf(lowers []string, target string) (string, error) {
	parts := strings.Split(target, "/")
	for _, lower := range lowers {
		found, hidden, err := lookIn(lower, parts)
		if err != nil || found {
			return lower, err
		}
		if hidden {
			return "", nil
		}
	}
	return "", nil
}

// lookIn reports whether one lower layer holds the path of parts (found),
// or hides it from the layers below (hidden).
func lookIn(lower string, parts []string) (found, hidden bool, err error) {
	p := lower
	sawOpaque := false
	for i, part := range parts {
		p = filepath.Join(p, part)
		fi, err := os.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			return false, sawOpaque, nil
		}
		if err != nil {
			return false, false, err
		}
		switch {
		case isWhiteout(fi):
			return false, true, nil
		case i == len(parts)-1:
			return true, false, nil
		case !fi.IsDir():
			return false, true, nil // a file or symlink shadows what lies below
		case opaque(p):
			sawOpaque = true
		}
	}
	return false, sawOpaque, nil
}

func isWhiteout(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode()&os.ModeCharDevice != 0 && st.Rdev == 0
}

func opaque(dir string) bool {
	b := make([]byte, 1)
	n, err := unix.Lgetxattr(dir, "trusted.overlay.opaque", b)
	return err == nil && n == 1 && b[0] == 'y'
}

// copyUp copies target from lower into upper with its owner, mode, extended
// attributes and times, making the missing parent directories as the lower
// layers have them.
func copyUp(upper, lower string, lowers []string, target string) error {
	parts := strings.Split(target, "/")
	for i := range parts[:len(parts)-1] {
		rel := filepath.Join(parts[:i+1]...)
		dst := filepath.Join(upper, rel)
		if fi, err := os.Lstat(dst); err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("copy up %s: %s is not a directory", target, rel)
			}
			continue
		}
		from, err := lowerOf(lowers, rel)
		if err != nil || from == "" {
			return fmt.Errorf("copy up %s: parent %s not found in the lower layers: %v", target, rel, err)
		}
		if err := copyEntry(filepath.Join(from, rel), dst); err != nil {
			return err
		}
	}
	return copyEntry(filepath.Join(lower, target), filepath.Join(upper, target))
}

// copyEntry copies one directory, regular file, symlink or fifo (its
// content, not a directory's) with its metadata.
func copyEntry(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.IsDir():
		err = os.Mkdir(dst, 0o700)
	case fi.Mode().IsRegular():
		err = copyFile(src, dst)
	case fi.Mode()&os.ModeSymlink != 0:
		var l string
		if l, err = os.Readlink(src); err == nil {
			err = os.Symlink(l, dst)
		}
	case fi.Mode()&os.ModeNamedPipe != 0:
		err = unix.Mkfifo(dst, 0o600)
	default:
		return fmt.Errorf("copy up %s: unsupported file type %v", src, fi.Mode().Type())
	}
	if err != nil {
		return fmt.Errorf("copy up %s: %w", src, err)
	}
	return copyMeta(src, dst, fi, st)
}

// copyMeta gives dst the owner, mode, extended attributes (overlay's own
// excepted) and times of src. The mode comes after the owner: chown clears
// the set-id bits.
func copyMeta(src, dst string, fi os.FileInfo, st *syscall.Stat_t) error {
	if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("copy up %s: %w", src, err)
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		if err := unix.Chmod(dst, st.Mode&07777); err != nil {
			return fmt.Errorf("copy up %s: %w", src, err)
		}
	}
	if err := copyXattrs(src, dst); err != nil {
		return fmt.Errorf("copy up %s: %w", src, err)
	}
	ts := []unix.Timespec{{Sec: st.Atim.Sec, Nsec: st.Atim.Nsec}, {Sec: st.Mtim.Sec, Nsec: st.Mtim.Nsec}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("copy up %s: %w", src, err)
	}
	return nil
}

func copyXattrs(src, dst string) error {
	size, err := unix.Llistxattr(src, nil)
	if err != nil || size == 0 {
		return nil // none, or a filesystem without them
	}
	buf := make([]byte, size)
	if size, err = unix.Llistxattr(src, buf); err != nil {
		return nil
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		if name == "" || strings.HasPrefix(name, "trusted.overlay.") {
			continue
		}
		vsize, err := unix.Lgetxattr(src, name, nil)
		if err != nil {
			continue
		}
		v := make([]byte, vsize)
		if vsize, err = unix.Lgetxattr(src, name, v); err != nil {
			continue
		}
		if err := unix.Lsetxattr(dst, name, v[:vsize], 0); err != nil {
			return fmt.Errorf("xattr %s: %w", name, err)
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// hasSymlinkAncestor reports whether a proper ancestor of the path of parts
// under root is a symlink.
func hasSymlinkAncestor(root string, parts []string) bool {
	p := root
	for _, part := range parts[:len(parts)-1] {
		p = filepath.Join(p, part)
		if fi, err := os.Lstat(p); err != nil || fi.Mode()&os.ModeSymlink != 0 {
			return err == nil
		}
	}
	return false
}
