package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/osthread"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NewNetNS creates a persistent network namespace for podID: a fresh netns
// bind-mounted onto dir/podID, so that it outlives every process in it. The
// namespace is made on a locked OS thread that is thrown away afterwards
// (osthread.Run), so no goroutine ever runs in it by accident.
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

	err = osthread.Run(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare network namespace: %w", err)
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount netns onto %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
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
	return osthread.Run(func() error {
		if err := netns.Set(target); err != nil {
			return fmt.Errorf("enter netns %s: %w", path, err)
		}
		return fn()
	})
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
