package guest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// consoleSocket is the unix socket an OCI runtime sends a terminal's
// master to (--console-socket), as one SCM_RIGHTS message.
type consoleSocket struct {
	path string
	l    *net.UnixListener
}

func listenConsole(path string) (*consoleSocket, error) {
	_ = os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	return &consoleSocket{path: path, l: l}, nil
}

// consoleWait bounds the wait for the runtime's connection, which it made
// before it exited: the connection waits in the backlog.
const consoleWait = 10 * time.Second

// receive accepts the runtime's connection and returns the master.
func (c *consoleSocket) receive(ctx context.Context) (*os.File, error) {
	deadline := time.Now().Add(consoleWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.l.SetDeadline(deadline)
	conn, err := c.l.AcceptUnix()
	if err != nil {
		return nil, fmt.Errorf("terminal from the runtime: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("terminal from the runtime: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, errors.Join(errors.New("terminal from the runtime: no file descriptor"), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, errors.Join(errors.New("terminal from the runtime: no file descriptor"), err)
	}
	unix.CloseOnExec(fds[0])
	return os.NewFile(uintptr(fds[0]), "terminal"), nil
}

func (c *consoleSocket) close() {
	_ = c.l.Close()
	_ = os.Remove(c.path)
}

// resize sets a terminal's size.
func resize(term *os.File, width, height uint16) error {
	return unix.IoctlSetWinsize(int(term.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: width, Row: height})
}
