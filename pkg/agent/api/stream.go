package api

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"
)

// Stream kinds: the first byte the host writes on every yamux stream it
// opens, so that the guest knows what the stream carries.
const (
	StreamRPC    byte = 'R' // the ttrpc connection of the Agent service
	StreamExec   byte = 'E' // ExecRequest, then process frames
	StreamAttach byte = 'A' // AttachRequest, then process frames
	StreamPort   byte = 'P' // PortForwardRequest, then a Ready or Error frame, then raw bytes
)

// Frame types of process streams (exec, attach). Host → guest: Stdin,
// CloseStdin, Resize. Guest → host: Stdout, Stderr, Exit, Error, Ready.
const (
	FrameStdin      byte = 1
	FrameStdout     byte = 2
	FrameStderr     byte = 3
	FrameCloseStdin byte = 4
	FrameResize     byte = 5 // width, height: two big-endian uint16
	FrameExit       byte = 6 // the exit code: big-endian int32; the last frame
	FrameError      byte = 7 // a UTF-8 message; the last frame
	FrameReady      byte = 8 // the process started (exec) / the port is connected
)

// MaxFrame is the largest frame payload; writers split longer data.
const MaxFrame = 32 << 10

// maxHeader bounds a stream header (a process spec with a large env).
const maxHeader = 1 << 20

// ErrFrameTooLarge is a frame or header over its bound: a broken peer.
var ErrFrameTooLarge = errors.New("agent stream frame too large")

// WriteHeader writes msg length-prefixed (big-endian uint32).
func WriteHeader(w io.Writer, msg proto.Message) error {
	b, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

// ReadHeader reads what WriteHeader wrote into msg.
func ReadHeader(r io.Reader, msg proto.Message) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return fmt.Errorf("read stream header: %w", err)
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxHeader {
		return fmt.Errorf("stream header of %d bytes: %w", size, ErrFrameTooLarge)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("read stream header: %w", err)
	}
	return proto.Unmarshal(b, msg)
}

// WriteFrame writes one frame: type, big-endian uint32 length, payload.
// Payloads over MaxFrame are split into several frames of the same type.
func WriteFrame(w io.Writer, typ byte, p []byte) error {
	for {
		n := min(len(p), MaxFrame)
		buf := make([]byte, 5+n)
		buf[0] = typ
		binary.BigEndian.PutUint32(buf[1:], uint32(n))
		copy(buf[5:], p[:n])
		if _, err := w.Write(buf); err != nil {
			return err
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
}

// ReadFrame reads one frame.
func ReadFrame(r io.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	size := binary.BigEndian.Uint32(h[1:])
	if size > MaxFrame {
		return 0, nil, fmt.Errorf("frame of %d bytes: %w", size, ErrFrameTooLarge)
	}
	p := make([]byte, size)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	return h[0], p, nil
}

// ExitPayload and ParseExit encode FrameExit's payload.
func ExitPayload(code int32) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(code))
}

// ParseExit decodes FrameExit's payload.
func ParseExit(p []byte) (int32, error) {
	if len(p) != 4 {
		return 0, fmt.Errorf("exit frame of %d bytes", len(p))
	}
	return int32(binary.BigEndian.Uint32(p)), nil
}

// ResizePayload and ParseResize encode FrameResize's payload.
func ResizePayload(width, height uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, width)
	return binary.BigEndian.AppendUint16(b, height)
}

// ParseResize decodes FrameResize's payload.
func ParseResize(p []byte) (width, height uint16, err error) {
	if len(p) != 4 {
		return 0, 0, fmt.Errorf("resize frame of %d bytes", len(p))
	}
	return binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:]), nil
}

// FrameWriter is an io.Writer whose every Write becomes frames of one type
// on w (e.g. a process's stdout).
type FrameWriter struct {
	W    io.Writer
	Type byte
}

func (f FrameWriter) Write(p []byte) (int, error) {
	if err := WriteFrame(f.W, f.Type, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
