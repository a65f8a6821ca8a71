package ociruntime

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// WinSize is a terminal's size in characters.
type WinSize struct {
	Width, Height uint16
}

// openPty makes a pseudo-terminal pair: the master stays with the daemon,
// the slave becomes the runtime's stdio and controlling terminal.
func openPty() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	defer func() {
		if err != nil {
			_ = master.Close()
		}
	}()
	rc, err := master.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var n int
	var ioErr error
	if err := rc.Control(func(fd uintptr) {
		if ioErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioErr != nil {
			return
		}
		n, ioErr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
	}); err != nil {
		return nil, nil, err
	}
	if ioErr != nil {
		return nil, nil, fmt.Errorf("unlock the pty: %w", ioErr)
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open the pty slave: %w", err)
	}
	return master, slave, nil
}

// setWinSize resizes the terminal of a pty master (the kernel signals the
// slave's foreground process group with SIGWINCH).
func setWinSize(master *os.File, s WinSize) error {
	rc, err := master.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: s.Height, Col: s.Width})
	}); err != nil {
		return err
	}
	return ioErr
}

// setProcessWinSize resizes the terminal of the process in pidFile (the
// first of its fds 0-2 that is one), reached through /proc: crun's
// foreground exec does not pass SIGWINCH on as runc does.
func setProcessWinSize(pidFile string, s WinSize) {
	pid, err := readPid(pidFile)
	if err != nil {
		return
	}
	for i := range 3 {
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/fd/%d", pid, i), unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		_, terr := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
		if terr == nil {
			_ = unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: s.Height, Col: s.Width})
		}
		_ = unix.Close(fd)
		if terr == nil {
			return
		}
	}
}
