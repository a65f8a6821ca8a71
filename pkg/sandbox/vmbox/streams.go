package vmbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// guestSpecFile keeps, in the container's bundle on the host, the spec the
// guest runs: exec takes the container's process from it.
const guestSpecFile = "config.json"

// Exec runs o.Cmd in the container through the agent, with the process of
// the container's spec (env, user, working directory) and the IO frames of
// an exec stream.
func (b *Backend) Exec(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container, o sandbox.ExecOptions) (int32, error) {
	data, err := os.ReadFile(filepath.Join(c.Bundle, guestSpecFile))
	if err != nil {
		return -1, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return -1, err
	}
	if spec.Process == nil {
		return -1, fmt.Errorf("container %s has no process", c.ID)
	}
	proc := *spec.Process
	proc.Args, proc.Terminal, proc.ConsoleSize = o.Cmd, o.TTY, nil
	pj, err := json.Marshal(&proc)
	if err != nil {
		return -1, err
	}
	vm, err := b.vmOf(pod)
	if err != nil {
		return -1, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, err := vm.Agent().OpenStream(ctx, api.StreamExec, &api.ExecRequest{
		ContainerId: c.ID, Process: pj, Stdin: o.Stdin != nil, TimeoutNs: o.Timeout.Nanoseconds(),
	})
	if err != nil {
		return -1, fmt.Errorf("exec in the guest: %w", err)
	}
	defer func() { _ = conn.Close() }()
	defer abortOnDone(ctx, conn)()
	go sendInput(ctx, conn, o.Stdin, o.Resize)
	code, err := receiveOutput(conn, o.Stdout, o.Stderr)
	if err != nil && ctx.Err() != nil {
		return -1, fmt.Errorf("exec in the guest: %w", context.Cause(ctx))
	}
	return code, err
}

// Attach copies between o and the container's stdio through the agent
// until the container exits or ctx ends (detaching leaves it running).
func (b *Backend) Attach(ctx context.Context, pod *sandbox.Pod, c *sandbox.Container, o sandbox.AttachOptions) error {
	vm, err := b.vmOf(pod)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stdin := o.Stdin
	if !c.Config.Stdin {
		stdin = nil
	}
	conn, err := vm.Agent().OpenStream(ctx, api.StreamAttach, &api.AttachRequest{
		ContainerId: c.ID, Stdin: stdin != nil, Stdout: o.Stdout != nil, Stderr: o.Stderr != nil,
	})
	if err != nil {
		return fmt.Errorf("attach in the guest: %w", err)
	}
	defer func() { _ = conn.Close() }()
	defer abortOnDone(ctx, conn)()
	go sendInput(ctx, conn, stdin, o.Resize)
	_, err = receiveOutput(conn, o.Stdout, o.Stderr)
	if ctx.Err() != nil {
		return nil // the client detached
	}
	return err
}

// abortOnDone ends conn when ctx ends: its end is sent (the agent then
// stops the process or detaches) and reads return at once.
func abortOnDone(ctx context.Context, conn net.Conn) (stop func() bool) {
	return context.AfterFunc(ctx, func() {
		_ = conn.Close()
		_ = conn.SetReadDeadline(time.Now())
	})
}

// sendInput frames stdin (then a CloseStdin at its end) and terminal
// sizes onto conn until ctx ends.
func sendInput(ctx context.Context, conn net.Conn, stdin io.Reader, resize <-chan sandbox.TerminalSize) {
	if stdin != nil {
		go func() {
			_, err := io.Copy(api.FrameWriter{W: conn, Type: api.FrameStdin}, stdin)
			if err == nil && ctx.Err() == nil {
				_ = api.WriteFrame(conn, api.FrameCloseStdin, nil)
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case sz, ok := <-resize:
			if !ok {
				return
			}
			if err := api.WriteFrame(conn, api.FrameResize, api.ResizePayload(sz.Width, sz.Height)); err != nil {
				return
			}
		}
	}
}

// receiveOutput copies output frames to stdout and stderr (nil: discarded)
// until the Exit frame (its code) or an Error frame (an error; a timeout
// wraps context.DeadlineExceeded).
func receiveOutput(conn net.Conn, stdout, stderr io.Writer) (int32, error) {
	for {
		typ, p, err := api.ReadFrame(conn)
		if err != nil {
			return -1, fmt.Errorf("agent stream: %w", err)
		}
		switch typ {
		case api.FrameStdout:
			write(stdout, p)
		case api.FrameStderr:
			write(stderr, p)
		case api.FrameExit:
			return api.ParseExit(p)
		case api.FrameError:
			msg := string(p)
			if strings.Contains(msg, "timeout") || strings.Contains(msg, "timed out") {
				return -1, fmt.Errorf("guest: %s: %w", msg, context.DeadlineExceeded)
			}
			return -1, fmt.Errorf("guest: %s", msg)
		}
	}
}

func write(w io.Writer, p []byte) {
	if w != nil {
		_, _ = w.Write(p)
	}
}

// DialPort connects to port on the pod's loopback: the agent dials it in
// the guest and the bytes travel on an agent stream. Nothing listening is
// an error wrapping ECONNREFUSED.
func (b *Backend) DialPort(ctx context.Context, pod *sandbox.Pod, port int32) (net.Conn, error) {
	vm, err := b.vmOf(pod)
	if err != nil {
		return nil, err
	}
	conn, err := vm.Agent().OpenStream(ctx, api.StreamPort, &api.PortForwardRequest{Port: port})
	if err != nil {
		return nil, fmt.Errorf("port-forward in the guest: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	typ, p, err := api.ReadFrame(conn)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	switch {
	case err != nil:
		_ = conn.Close()
		return nil, fmt.Errorf("port-forward in the guest: %w", err)
	case typ == api.FrameError:
		_ = conn.Close()
		msg := string(p)
		if strings.Contains(msg, "connection refused") {
			return nil, fmt.Errorf("guest port %d: %s: %w", port, msg, syscall.ECONNREFUSED)
		}
		return nil, fmt.Errorf("guest port %d: %s", port, msg)
	case typ != api.FrameReady:
		_ = conn.Close()
		return nil, fmt.Errorf("guest port %d: unexpected frame %d", port, typ)
	}
	return halfCloser{conn}, nil
}

// halfCloser gives an agent stream the CloseWrite port-forward expects: a
// yamux stream's Close sends its end (FIN) and leaves reading open until
// the guest ends its side.
type halfCloser struct{ net.Conn }

func (h halfCloser) CloseWrite() error { return h.Close() }
