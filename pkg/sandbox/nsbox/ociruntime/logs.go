package ociruntime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// reopenLogsEvent is conmon's control message type for "reopen the log
// files" (REOPEN_LOGS_EVENT in conmon's ctrl.h; 1 is a window resize).
// A message is "<type> <height> <width>\n" on the ctl fifo in the bundle.
const reopenLogsEvent = 2

// ReopenLog asks conmon to reopen the container's log file, after it has
// been renamed (kubelet's log rotation): new lines go to a new file at the
// original path. conmon acts on the message asynchronously.
func (r *Runtime) ReopenLog(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	m, err := r.readMeta(id)
	if err != nil {
		return fmt.Errorf("reopen the log of %s: %w", id, err)
	}
	ctl := filepath.Join(m.Bundle, "ctl")
	// Non-blocking: with no conmon reading the fifo, opening fails with
	// ENXIO instead of hanging.
	fd, err := unix.Open(ctl, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("reopen the log of %s: conmon is not running: %w", id, errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("reopen the log of %s: open %s: %w", id, ctl, err)
	}
	f := os.NewFile(uintptr(fd), ctl)
	defer f.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = f.SetWriteDeadline(dl)
	}
	if _, err := fmt.Fprintf(f, "%d 0 0\n", reopenLogsEvent); err != nil {
		return fmt.Errorf("reopen the log of %s: write %s: %w", id, ctl, err)
	}
	// conmon reopens asynchronously; kubelet expects the new file to exist
	// when the call returns.
	ctx, cancel := context.WithTimeout(ctx, reopenTimeout)
	defer cancel()
	for {
		if _, err := os.Stat(m.LogPath); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("reopen the log of %s: conmon did not make %s: %w", id, m.LogPath, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// reopenTimeout bounds the wait for conmon to make the reopened log file.
const reopenTimeout = 5 * time.Second
