package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NewNetNS creates a persistent network namespace for podID: a fresh netns
// bind-mounted onto dir/podID, so that it outlives every process in it. The
// namespace is made on a locked OS thread that is thrown away afterwards,
// so no goroutine ever runs in it by accident.
func NewNetNS(dir, podID string) (string, error) {
	if err := validID(podID); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create netns directory: %w", err)
	}
	path := filepath.Join(dir, podID)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("netns %s: %w", path, errdefs.ErrAlreadyExists)
	}
	if err != nil {
		return "", fmt.Errorf("create netns file: %w", err)
	}
	f.Close()

	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it leaves with the goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind-mount netns onto %s: %w", path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return "", err
	}
	return path, nil
}

// RemoveNetNS unmounts and removes a namespace made by NewNetNS. A missing
// or already unmounted path is not an error.
func RemoveNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}

// WithNetNS runs fn on a locked OS thread switched into the network
// namespace at path. If the thread cannot be switched back it is left
// locked, so the runtime discards it when the goroutine ends.
func WithNetNS(path string, fn func() error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer func() { _ = target.Close() }()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer func() { _ = orig.Close() }()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave netns %s: %w", path, err))
			return // thread stays locked and dies with the goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// validID accepts pod IDs that are safe as file names and nftables tags.
func validID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("pod id %q: must be 1 to 128 characters: %w", id, errdefs.ErrInvalidArgument)
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("pod id %q: only letters, digits, '-', '_' and '.' are allowed: %w", id, errdefs.ErrInvalidArgument)
		}
	}
	if id == "." || id == ".." {
		return fmt.Errorf("pod id %q: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}
