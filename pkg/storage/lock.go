package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ErrLocked is returned by Open when another process holds the store.
var ErrLocked = errors.New("image store is in use")

// lockRoot takes an exclusive, non-blocking flock on root/lock and records
// our pid in it. The kernel drops the lock when the process dies, so a crash
// never leaves the store locked.
func lockRoot(root string) (*os.File, error) {
	p := filepath.Join(root, "lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			b, _ := os.ReadFile(p)
			owner := strings.TrimSpace(string(b))
			if owner == "" {
				owner = "unknown"
			}
			return nil, fmt.Errorf("%w: %s is locked by pid %s (is another cradle daemon running on root %s?): %w",
				ErrLocked, p, owner, filepath.Dir(root), errdefs.ErrFailedPrecondition)
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
