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
	released := func() { r.failpoint("startcontainer:released") }
	if r.crun {
		out, err = execfifo.ByWrite(path, pid, released)
	} else {
		out, err = execfifo.ByRead(ctx, path, pid, released)
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	if out == execfifo.AlreadyReleased {
		r.log.WarnContext(ctx, "container was released by an interrupted start; removed its exec fifo", "id", id, "pid", pid)
	}
	return nil
}

// finishInterruptedStart corrects a created state when a start released
// init and ended before it removed the exec FIFO (the daemon was killed
// between the two): the container runs, and its runtime will say so from
// now on.
func (r *Runtime) finishInterruptedStart(ctx context.Context, id string, st *Status) error {
	done, err := execfifo.FinishInterrupted(execfifo.Path(r.root, id), st.Pid)
	if err != nil {
		return err
	}
	if done {
		r.log.WarnContext(ctx, "container was released by an interrupted start; removed its exec fifo", "id", id, "pid", st.Pid)
		st.State = StateRunning
	}
	return nil
}
