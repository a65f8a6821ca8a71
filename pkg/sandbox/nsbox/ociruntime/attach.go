package ociruntime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// conmon's attach socket (conn_sock.c): a SOCK_SEQPACKET socket named
// "attach" in the bundle. Each packet conmon sends is one read of the
// container's output, led by a byte naming the stream (conmon's stdpipe_t:
// 1 stdin, 2 stdout, 3 stderr); what a client sends goes to the
// container's stdin (conmon reads up to 32767 bytes a packet).
const (
	attachPipeStdout = 2
	attachPipeStderr = 3
	attachReadSize   = 32 << 10
	attachWriteSize  = 8 << 10
)

// AttachOptions describe a client of a container's stdio.
type AttachOptions struct {
	Stdin          io.Reader // nil: none
	Stdout, Stderr io.Writer // nil discards; with a terminal all output is Stdout
	// CloseStdin closes the container's stdin when Stdin ends (a
	// stdin_once container without a terminal).
	CloseStdin bool
	Resize     <-chan WinSize // terminal size changes; nil: none
}

// Attach connects to the container's stdio through conmon and copies until
// the container's output ends (it exited, conmon closed the socket) or ctx
// ends (the client went away). The client sees output from the moment it
// attaches; detaching leaves the container running (conmon closes the
// container's stdin on detach only if it was created without
// LeaveStdinOpen).
func (r *Runtime) Attach(ctx context.Context, id string, o AttachOptions) error {
	if err := checkID(id); err != nil {
		return err
	}
	m, err := r.readMeta(id)
	if err != nil {
		return fmt.Errorf("attach to %s: %w", id, err)
	}
	conn, err := dialAttach(m.Bundle)
	if err != nil {
		return fmt.Errorf("attach to %s: %w", id, err)
	}
	defer func() { _ = conn.Close() }()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	done := make(chan struct{})
	defer close(done)
	if o.Resize != nil {
		go forwardResize(m.Bundle, o.Resize, done) //nolint:gosec // G118: ends with done, when the attach does
	}
	if o.Stdin != nil {
		go func() {
			buf := make([]byte, attachWriteSize)
			// Plain Reader and Writer: one packet per write of at most buf.
			_, err := io.CopyBuffer(struct{ io.Writer }{conn}, struct{ io.Reader }{o.Stdin}, buf)
			if err == nil && o.CloseStdin {
				_ = conn.CloseWrite()
			}
		}()
	}
	err = readAttach(conn, o.Stdout, o.Stderr)
	if ctx.Err() != nil {
		return nil // the client detached
	}
	if err != nil {
		return fmt.Errorf("attach to %s: %w", id, err)
	}
	return nil
}

// dialAttach connects to the attach socket in bundle, through
// /proc/self/fd: the bundle's path may be longer than a socket address.
func dialAttach(bundle string) (*net.UnixConn, error) {
	dir, err := os.OpenFile(bundle, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open bundle: %w", err)
	}
	defer dir.Close()
	addr := &net.UnixAddr{Net: "unixpacket", Name: "/proc/self/fd/" + strconv.Itoa(int(dir.Fd())) + "/attach"}
	conn, err := net.DialUnix("unixpacket", nil, addr)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ECONNREFUSED) {
			return nil, fmt.Errorf("conmon is not running: %v: %w", err, errdefs.ErrFailedPrecondition)
		}
		return nil, fmt.Errorf("connect to the attach socket: %w", err)
	}
	return conn, nil
}

// readAttach copies conmon's packets to stdout and stderr until EOF. A
// failed write (the client is gone) ends it.
func readAttach(conn *net.UnixConn, stdout, stderr io.Writer) error {
	buf := make([]byte, attachReadSize)
	for {
		n, err := conn.Read(buf)
		if n > 1 {
			var w io.Writer
			switch buf[0] {
			case attachPipeStdout:
				w = stdout
			case attachPipeStderr:
				w = stderr
			}
			if w != nil {
				if _, werr := w.Write(buf[1:n]); werr != nil {
					return werr
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// forwardResize passes window sizes to conmon until sizes ends or done is
// closed.
func forwardResize(bundle string, sizes <-chan WinSize, done <-chan struct{}) {
	for {
		select {
		case s, ok := <-sizes:
			if !ok {
				return
			}
			_ = writeCtl(context.Background(), bundle, winResizeEvent, int(s.Height), int(s.Width))
		case <-done:
			return
		}
	}
}
