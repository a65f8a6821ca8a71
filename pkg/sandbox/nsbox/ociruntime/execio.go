package ociruntime

import (
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// execIO connects an exec's runtime command to the caller's streams.
type execIO interface {
	// started is called once the runtime has started.
	started()
	// close is called once it has exited (or failed to start): it lets
	// the output drain (bounded) and releases the descriptors.
	close()
}

// pipeIO gives the runtime pipes of our own: stdout and stderr copied to
// the caller's writers (see awaitOutput for when the copy ends), stdin
// from the caller's reader, so that a caller's stdin that never ends
// cannot hold up Wait.
type pipeIO struct {
	src            io.Reader
	stdinR, stdinW *os.File
	closeW         sync.Once
	outs           []*outPipe
	isStarted      bool
}

// outPipe carries one output stream of the runtime to its writer.
type outPipe struct {
	r, w *os.File // w is the runtime's end, closed here once it started
	dst  io.Writer
	done chan struct{} // the copy has ended
}

func newPipeIO(cmd *exec.Cmd, o ExecOptions, errTail io.Writer) (*pipeIO, error) {
	p := &pipeIO{src: o.Stdin}
	outs := []struct {
		dst io.Writer
		set *io.Writer
	}{{nil, &cmd.Stdout}, {io.MultiWriter(&drainWriter{w: o.Stderr}, errTail), &cmd.Stderr}}
	if o.Stdout != nil {
		outs[0].dst = &drainWriter{w: o.Stdout}
	}
	for _, out := range outs {
		if out.dst == nil {
			continue // the runtime's stdout is /dev/null
		}
		r, w, err := os.Pipe()
		if err != nil {
			p.close()
			return nil, err
		}
		*out.set = w
		p.outs = append(p.outs, &outPipe{r: r, w: w, dst: out.dst, done: make(chan struct{})})
	}
	if o.Stdin == nil {
		return p, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		p.close()
		return nil, err
	}
	cmd.Stdin, p.stdinR, p.stdinW = r, r, w
	return p, nil
}

func (p *pipeIO) started() {
	p.isStarted = true
	for _, out := range p.outs {
		_ = out.w.Close() // the runtime and the process hold it now: EOF once they are gone
		go func() {
			defer close(out.done)
			_, _ = io.Copy(out.dst, out.r)
		}()
	}
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

// close is called once the runtime has exited (or failed to start): each
// output is copied to its end (awaitOutput) and the pipes are released.
func (p *pipeIO) close() {
	deadline := time.Now().Add(execWaitDelay)
	for _, out := range p.outs {
		if !p.isStarted {
			_ = out.w.Close()
			_ = out.r.Close()
			continue
		}
		awaitOutput(out.done, out.r, deadline)
		_ = out.r.Close() // ends a copy that waits on a background child's pipe
		<-out.done
	}
	if p.stdinR == nil {
		return
	}
	_ = p.stdinR.Close() // if the runtime never started
	p.closeStdin()
}

// awaitOutput waits, once the runtime has exited, for the copy of the
// output src (done closes at its end of file). Past deadline it stops
// waiting, but only when nothing is left to read from src: what the
// process wrote before it exited reaches the caller however long the
// caller (or a daemon starved of CPU by many runtime processes) takes over
// it; what is cut is an output that a background child keeps open and
// quiet. execDrainLimit bounds it all (a background child that never stops
// writing).
func awaitOutput(done <-chan struct{}, src *os.File, deadline time.Time) {
	limit := time.NewTimer(time.Until(deadline) + execDrainLimit)
	defer limit.Stop()
	wait := time.NewTimer(time.Until(deadline))
	defer wait.Stop()
	for {
		select {
		case <-done:
			return
		case <-limit.C:
			return
		case <-wait.C:
			if unread(src) == 0 {
				return
			}
			wait.Reset(outputPoll)
		}
	}
}

// unread is how many bytes src (a pipe or a pty master) holds unread
// (FIONREAD, which is TIOCINQ on Linux).
func unread(src *os.File) int {
	rc, err := src.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) })
	return n
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
		awaitOutput(t.outDone, t.master, time.Now().Add(execWaitDelay))
	} else {
		_ = t.slave.Close()
	}
	close(t.stop)
	_ = t.master.Close()
}
