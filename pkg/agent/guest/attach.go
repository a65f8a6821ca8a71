package guest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/containerd/errdefs"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// errLagged ends an attach whose client could not keep up with the
// container's output.
var errLagged = errors.New("attach: the client fell behind the container's output and was cut off")

// ServeAttach streams the container's output from now on (the streams asked
// for; a terminal's is all stdout) and passes the host's stdin and terminal
// sizes to it. It ends with the exit code once the container has exited;
// the host closing the stream only detaches (and closes the container's
// stdin if it is stdin_once).
func (r *Runtime) ServeAttach(ctx context.Context, conn net.Conn, req *api.AttachRequest) {
	defer func() { _ = conn.Close() }()
	fw := &frameWriter{w: conn}
	c, err := r.get(req.ContainerId)
	if err == nil && req.Stdin && c.stdin == nil {
		err = fmt.Errorf("attach to %s: it was created without stdin: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		fw.fail(err)
		return
	}
	sub := c.out.subscribe(req.Stdout || (c.tty && req.Stderr), req.Stderr)
	defer c.out.unsubscribe(sub)
	if req.Stdin && c.stdinOnce {
		defer c.closeStdin()
	}
	hostGone := make(chan struct{})
	go func() {
		_ = readInbound(conn, c.inbound(req.Stdin))
		close(hostGone)
	}()
	defer func() { _ = conn.SetReadDeadline(time.Now()) }() // ends readInbound
	if !relayOutput(ctx, fw, sub, hostGone) {
		return // detached
	}
	if c.out.isLagged(sub) {
		fw.fail(errLagged)
		return
	}
	select {
	case <-c.done:
		_, exit := c.current()
		fw.exit(exit.ExitCode)
	case <-c.removed:
		fw.fail(fmt.Errorf("container %s was removed: %w", c.id, errdefs.ErrNotFound))
	case <-hostGone:
	case <-ctx.Done():
	}
}

// relayOutput writes the subscription's output as frames until it ends
// (true) or the host goes away (false).
func relayOutput(ctx context.Context, fw *frameWriter, sub *subscriber, hostGone <-chan struct{}) bool {
	for {
		select {
		case ch, ok := <-sub.ch:
			if !ok {
				return true
			}
			typ := api.FrameStdout
			if ch.stream == streamStderr {
				typ = api.FrameStderr
			}
			if fw.frame(typ, ch.data) != nil {
				return false
			}
		case <-hostGone:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// inbound is what an attach client may do: write to the container's stdin
// (if it asked to), close it (a stdin_once container), resize a terminal.
func (c *container) inbound(withStdin bool) inbound {
	var h inbound
	if c.tty {
		h.resize = func(w, ht uint16) { _ = setWinSize(c.stdin, w, ht) }
	}
	if withStdin {
		h.stdin = c.writeStdin
		if c.stdinOnce {
			h.closeStdin = c.closeStdin
		}
	}
	return h
}
