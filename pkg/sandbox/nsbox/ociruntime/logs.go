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

// conmon's control message types (ctrl.h). A message is
// "<type> <height> <width>\n" on the ctl fifo in the bundle.
const (
	winResizeEvent  = 1
	reopenLogsEvent = 2
)

// ReopenLog asks conmon to reopen the container's log file, after it has
// been renamed (kubelet's log rotation): new lines go to a new file at the
// original path. conmon acts on the message asynchronously; ReopenLog
// returns once the new file exists.
func (r *Runtime) ReopenLog(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	m, err := r.readMeta(id)
	if err != nil {
		return fmt.Errorf("reopen the log of %s: %w", id, err)
	}
	if err := writeCtl(ctx, m.Bundle, reopenLogsEvent, 0, 0); err != nil {
		return fmt.Errorf("reopen the log of %s: %w", id, err)
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

// writeCtl writes one message to conmon's ctl fifo in bundle.
func writeCtl(ctx context.Context, bundle string, typ, height, width int) error {
	ctl := filepath.Join(bundle, "ctl")
	// Non-blocking: with no conmon reading the fifo, opening fails with
	// ENXIO instead of hanging.
	fd, err := unix.Open(ctl, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("conmon is not running: %w", errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("open %s: %w", ctl, err)
	}
	f := os.NewFile(uintptr(fd), ctl)
	defer f.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = f.SetWriteDeadline(dl)
	}
	// One message a write: conmon 2.1 handles one line per read.
	if _, err := fmt.Fprintf(f, "%d %d %d\n", typ, height, width); err != nil {
		return fmt.Errorf("write %s: %w", ctl, err)
	}
	return nil
}

// reopenTimeout bounds the wait for conmon to make the reopened log file.
const reopenTimeout = 5 * time.Second
