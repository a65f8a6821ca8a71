package guest

import (
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// ServeAttach connects the stream to the container's stdio from now on:
// its output as frames, the host's stdin frames to its stdin. It ends with
// an Exit frame when the container exits; the host ending the stream
// detaches (closing the container's stdin if it is stdin_once).
func (s *Service) ServeAttach(ctx context.Context, conn net.Conn, req *api.AttachRequest) {
	defer conn.Close()
	out := &frames{conn: conn}
	c, err := s.get(req.GetContainerId())
	if err != nil {
		_ = out.send(api.FrameError, []byte(err.Error()))
		return
	}
	var stdout, stderr io.Writer
	if req.Stdout {
		stdout = out.writer(api.FrameStdout)
	}
	if req.Stderr {
		stderr = out.writer(api.FrameStderr)
	}
	sub := c.out.subscribe(stdout, stderr)
	defer c.out.unsubscribe(sub)
	hostGone := make(chan struct{})
	go func() {
		input(conn, func() *os.File {
			if !req.Stdin {
				return nil
			}
			c.stdinMu.Lock()
			defer c.stdinMu.Unlock()
			return c.stdin
		}, func() {
			if req.Stdin && c.stdinOnce {
				c.closeStdin()
			}
		}, func() *os.File { return c.terminal })
		close(hostGone)
	}()
	select {
	case <-c.exited:
		_ = out.send(api.FrameExit, api.ExitPayload(c.exit.GetExitCode()))
	case <-hostGone:
		if req.Stdin && c.stdinOnce {
			c.closeStdin()
		}
	case <-sub.gone:
	case <-ctx.Done():
	}
}

// closeStdin closes the container's stdin (a terminal stays open: its
// output still flows).
func (c *container) closeStdin() {
	c.stdinMu.Lock()
	defer c.stdinMu.Unlock()
	if c.stdin != nil && c.stdin != c.terminal {
		_ = c.stdin.Close()
	}
	c.stdin = nil
}

// ServePort connects to port on the guest's loopback (the pod's network)
// and copies bytes both ways, each direction ending on its own.
func (s *Service) ServePort(ctx context.Context, conn net.Conn, req *api.PortForwardRequest) {
	defer conn.Close()
	out := &frames{conn: conn}
	var d net.Dialer
	port := itoa(req.GetPort())
	target, err := d.DialContext(ctx, "tcp4", "127.0.0.1:"+port)
	if err != nil {
		var err6 error
		if target, err6 = d.DialContext(ctx, "tcp6", "[::1]:"+port); err6 != nil {
			_ = out.send(api.FrameError, []byte(err.Error()))
			return
		}
	}
	defer target.Close()
	if err := out.send(api.FrameReady, nil); err != nil {
		return
	}
	_ = conn.SetWriteDeadline(noDeadline)
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(target, conn)
		if tc, ok := target.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(conn, target)
		_ = conn.Close() // a yamux stream's Close is its half-close
		done <- struct{}{}
	}()
	<-done
	<-done
}

var noDeadline = time.Time{}

func itoa(n int32) string { return strconv.Itoa(int(n)) }
