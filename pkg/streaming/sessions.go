package streaming

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// sessions implements the library's Runtime on the engine.
type sessions struct {
	e   Engine
	log *slog.Logger
}

// Exec runs cmd; a non-zero exit code goes back to the client as such
// (the library reports a utilexec.ExitError with its code).
func (s *sessions) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := sandbox.ExecOptions{Cmd: cmd, Stdin: in, TTY: tty, Resize: sandbox.Relay(ctx, resize, terminalSize)}
	// Nil streams stay nil interfaces: no stream, not a nil writer.
	if out != nil {
		o.Stdout = out
	}
	if errOut != nil {
		o.Stderr = errOut
	}
	code, err := s.e.Exec(ctx, id, o)
	if err != nil {
		s.log.Debug("exec session failed", "container", id, "cmd", cmd, "error", err)
		return err
	}
	s.log.Debug("exec session done", "container", id, "cmd", cmd, "code", code)
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: int(code)}
	}
	return nil
}

// Attach connects to the container's stdio until it exits or the client
// goes away.
func (s *sessions) Attach(ctx context.Context, id string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := sandbox.AttachOptions{Stdin: in, Resize: sandbox.Relay(ctx, resize, terminalSize)}
	if out != nil {
		o.Stdout = out
	}
	if errOut != nil {
		o.Stderr = errOut
	}
	return s.e.Attach(ctx, id, o)
}

// PortForward copies between stream and a connection to port in the pod
// until the pod's side closes or the stream ends. A refused connection is
// the error the client sees.
func (s *sessions) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	conn, err := s.e.PortForward(ctx, podID, port)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	return pipe(conn, stream)
}

// pipe copies both ways. The client's end of input half-closes the pod's
// connection; the pod's end of output ends the forwarding.
func pipe(conn net.Conn, stream io.ReadWriter) error {
	go func() {
		_, err := io.Copy(conn, stream)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok && err == nil {
			_ = cw.CloseWrite()
			return
		}
		_ = conn.Close() // the client is gone: stop the other direction too
	}()
	_, err := io.Copy(stream, conn)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func terminalSize(s remotecommand.TerminalSize) sandbox.TerminalSize {
	return sandbox.TerminalSize{Width: s.Width, Height: s.Height}
}
