package ociruntime

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/cradle-runtime/cradle/pkg/execfifo"
)

// startByFifo releases the created container's init through its exec FIFO,
// as `runtime start` would (see pkg/execfifo). It returns
// execfifo.ErrNoFifo when there is no FIFO to release it by.
func (r *Runtime) startByFifo(ctx context.Context, id string) error {
	path := execfifo.Path(r.root, id)
	pid, err := readPid(r.pidFile(id))
	if err != nil {
		if errdefs.IsNotFound(err) {
			return execfifo.ErrNoFifo
		}
		return err
	}
	var out execfifo.Outcome
	if r.crun {
		out, err = execfifo.ByWrite(path, pid)
	} else {
		out, err = execfifo.ByRead(ctx, path, pid)
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	if out == execfifo.AlreadyReleased {
		r.log.WarnContext(ctx, "container was released by an interrupted start; removed its exec fifo", "id", id, "pid", pid)
	}
	return nil
}
