package guest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// consoleSocket is the socket crun passes a terminal's pty master on
// (--console-socket): one connection, one message with the fd in
// SCM_RIGHTS.
type consoleSocket struct {
	dir  string
	path string
	l    *net.UnixListener
}

// newConsoleSocket listens in a fresh directory under tempDir.
func newConsoleSocket(tempDir string) (*consoleSocket, error) {
	dir, err := os.MkdirTemp(tempDir, "console-")
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	path := filepath.Join(dir, "sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Net: "unix", Name: path})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("console socket: %w", err)
	}
	return &consoleSocket{dir: dir, path: path, l: l}, nil
}

// receive accepts crun's connection and returns the pty master it sends,
// non-blocking so that reads on it can be interrupted by closing it. It
// gives up at deadline or when the socket is closed.
func (s *consoleSocket) receive(deadline time.Time) (*os.File, error) {
	if err := s.l.SetDeadline(deadline); err != nil {
		return nil, err
	}
	conn, err := s.l.AcceptUnix()
	if err != nil {
		return nil, fmt.Errorf("receive the terminal: %w", err)
	}
	defer func() { _ = conn.Close() }()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("receive the terminal: %w", err)
	}
	fds, err := parseRights(oob[:oobn])
	if err != nil {
		return nil, fmt.Errorf("receive the terminal: %w", err)
	}
	for _, fd := range fds[1:] {
		_ = unix.Close(fd)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		_ = unix.Close(fds[0])
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), "pty-master"), nil
}

// parseRights returns the fds of SCM_RIGHTS messages in oob (at least one).
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		if f, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, f...)
		}
	}
	if len(fds) == 0 {
		return nil, errors.New("no file descriptor in the message")
	}
	return fds, nil
}

func (s *consoleSocket) close() {
	_ = s.l.Close()
	os.RemoveAll(s.dir)
}

// setWinSize sets a pty's window size (the kernel signals SIGWINCH to the
// terminal's foreground process group).
func setWinSize(master *os.File, width, height uint16) error {
	rc, err := master.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: height, Col: width})
	}); err != nil {
		return err
	}
	return ioErr
}
