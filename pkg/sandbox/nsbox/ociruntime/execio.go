package ociruntime

import (
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// execIO connects an exec's runtime command to the caller's streams.
type execIO interface {
	// started is called once the runtime has started.
	started()
	// close is called once it has exited (or failed to start): it lets
	// the output drain (bounded) and releases the descriptors.
	close()
}

// pipeIO gives the runtime pipes: stdout and stderr through os/exec's
// copying, stdin through a pipe of our own, so that a caller's stdin that
// never ends cannot hold up Wait.
type pipeIO struct {
	src            io.Reader
	stdinR, stdinW *os.File
	closeW         sync.Once
}

func newPipeIO(cmd *exec.Cmd, o ExecOptions, errTail io.Writer) (*pipeIO, error) {
	if o.Stdout != nil {
		cmd.Stdout = &drainWriter{w: o.Stdout}
	}
	cmd.Stderr = io.MultiWriter(&drainWriter{w: o.Stderr}, errTail)
	p := &pipeIO{src: o.Stdin}
	if o.Stdin == nil {
		return p, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdin, p.stdinR, p.stdinW = r, r, w
	return p, nil
}

func (p *pipeIO) started() {
	if p.stdinR == nil {
		return
	}
	_ = p.stdinR.Close()
	go func() {
		_, _ = io.Copy(p.stdinW, p.src)
		p.closeStdin() // EOF to the process
	}()
}

func (p *pipeIO) closeStdin() { p.closeW.Do(func() { _ = p.stdinW.Close() }) }

func (p *pipeIO) close() {
	if p.stdinR == nil {
		return
	}
	_ = p.stdinR.Close() // if the runtime never started
	p.closeStdin()
}

// terminalIO gives the runtime a pty of ours as its stdio and controlling
// terminal.
type terminalIO struct {
	o             ExecOptions
	pidFile       string
	master, slave *os.File
	isStarted     bool
	outDone, stop chan struct{}
}

func newTerminalIO(cmd *exec.Cmd, o ExecOptions, pidFile string, first *WinSize) (*terminalIO, error) {
	master, slave, err := openPty()
	if err != nil {
		return nil, err
	}
	t := &terminalIO{o: o, pidFile: pidFile, master: master, slave: slave, outDone: make(chan struct{}), stop: make(chan struct{})}
	if first != nil {
		_ = setWinSize(master, *first)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	return t, nil
}

// firstWinSize waits briefly for the first size on sizes.
func firstWinSize(sizes <-chan WinSize) *WinSize {
	if sizes == nil {
		return nil
	}
	select {
	case s, ok := <-sizes:
		if ok {
			return &s
		}
	case <-time.After(firstSizeWait):
	}
	return nil
}

func (t *terminalIO) started() {
	t.isStarted = true
	_ = t.slave.Close() // the runtime holds it now: EIO on the master once it exits
	go func() {
		defer close(t.outDone)
		_, _ = io.Copy(&drainWriter{w: t.o.Stdout}, t.master)
	}()
	if t.o.Stdin != nil {
		go func() { _, _ = io.Copy(t.master, t.o.Stdin) }()
	}
	if t.o.Resize != nil {
		go t.resize()
	}
}

func (t *terminalIO) resize() {
	for {
		select {
		case s, ok := <-t.o.Resize:
			if !ok {
				return
			}
			_ = setWinSize(t.master, s) // runc: SIGWINCH
			setProcessWinSize(t.pidFile, s)
		case <-t.stop:
			return
		}
	}
}

func (t *terminalIO) close() {
	if t.isStarted {
		select {
		case <-t.outDone:
		case <-time.After(execWaitDelay):
		}
	} else {
		_ = t.slave.Close()
	}
	close(t.stop)
	_ = t.master.Close()
}
