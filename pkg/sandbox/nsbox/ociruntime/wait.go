package ociruntime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// waitRecheck is how often Wait looks at the exit file even without an
// inotify event (a safety net, not the mechanism).
const waitRecheck = time.Second

// Wait blocks until conmon has written the container's exit code, and
// returns the status then. It watches the exit directory with inotify.
func (r *Runtime) Wait(ctx context.Context, id string) (Status, error) {
	if err := checkID(id); err != nil {
		return Status{}, err
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return Status{}, fmt.Errorf("wait for %s: inotify: %w", id, err)
	}
	f := os.NewFile(uintptr(fd), "inotify") // non-blocking: reads honour deadlines
	defer f.Close()
	if _, err := unix.InotifyAddWatch(fd, r.exitDir(id), unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return Status{}, fmt.Errorf("wait for %s: %w", id, errdefs.ErrNotFound)
		}
		return Status{}, fmt.Errorf("wait for %s: watch %s: %w", id, r.exitDir(id), err)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 4096)
	for {
		var st Status
		exited, err := r.readExit(id, &st)
		if err != nil {
			return Status{}, fmt.Errorf("wait for %s: %w", id, err)
		}
		if exited {
			return st, nil
		}
		if _, err := os.Stat(r.exitDir(id)); err != nil {
			return Status{}, fmt.Errorf("wait for %s: deleted: %w", id, errdefs.ErrNotFound)
		}
		if ctx.Err() != nil {
			return Status{}, fmt.Errorf("wait for %s: %w", id, ctx.Err())
		}
		_ = f.SetReadDeadline(time.Now().Add(waitRecheck))
		if _, err := f.Read(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return Status{}, fmt.Errorf("wait for %s: read inotify: %w", id, err)
		}
	}
}
