package guest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// frameWriter writes the frames of one process stream; the process's
// stdout and stderr copiers and the final frame share it.
type frameWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (f *frameWriter) frame(typ byte, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return api.WriteFrame(f.w, typ, p)
}

// Write makes frameWriter usable as an io.Writer of one frame type.
type typedWriter struct {
	f   *frameWriter
	typ byte
}

func (t typedWriter) Write(p []byte) (int, error) {
	if err := t.f.frame(t.typ, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (f *frameWriter) of(typ byte) io.Writer { return typedWriter{f: f, typ: typ} }

// exitFrame ends a stream with the process's exit code.
func (f *frameWriter) exit(code int32) { _ = f.frame(api.FrameExit, api.ExitPayload(code)) }

// fail ends a stream with an error.
func (f *frameWriter) fail(err error) { _ = f.frame(api.FrameError, []byte(err.Error())) }

// inbound is what a process stream does with the host's frames; a nil
// handler ignores its frames.
type inbound struct {
	stdin      func(p []byte) error
	closeStdin func()
	resize     func(width, height uint16)
}

// readInbound handles the host's frames until the stream ends: nil at EOF
// or when the stream was closed under it (the host went, or the stream was
// done), else the broken frame's error. A failed stdin write (the process
// closed its stdin) drops later stdin frames.
func readInbound(r io.Reader, h inbound) error {
	for {
		typ, p, err := api.ReadFrame(r)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return err
		}
		switch typ {
		case api.FrameStdin:
			if h.stdin != nil && h.stdin(p) != nil {
				h.stdin = nil
			}
		case api.FrameCloseStdin:
			if h.closeStdin != nil {
				h.closeStdin()
				h.stdin, h.closeStdin = nil, nil
			}
		case api.FrameResize:
			w, ht, err := api.ParseResize(p)
			if err != nil {
				return err
			}
			if h.resize != nil {
				h.resize(w, ht)
			}
		default:
			return fmt.Errorf("unexpected frame type %d from the host", typ)
		}
	}
}
