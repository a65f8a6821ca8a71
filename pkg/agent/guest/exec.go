package guest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// execStartWait bounds how long crun exec may take to pass a terminal's
// pty master.
const execStartWait = 10 * time.Second

// execProc is a process run by `crun exec` in the foreground: crun's own
// exit status is the process's.
type execProc struct {
	crun    *Proc
	exit    chan Exit     // crun's exit, once
	crunEnd chan struct{} // closed when crun has exited
	files   string        // the process spec; .pid and .log beside it
	stdin   *os.File      // the stdin pipe or the pty master; nil: none
	master  *os.File      // the pty master of a terminal
	outputs map[byte]*os.File
}

// ServeExec runs req's process in its container, streaming its stdio, and
// ends the stream with its exit code (or an error: the process could not
// run, or its time ran out). The host closing the stream kills it.
func (r *Runtime) ServeExec(ctx context.Context, conn net.Conn, req *api.ExecRequest) {
	defer func() { _ = conn.Close() }()
	fw := &frameWriter{w: conn}
	code, err := r.exec(ctx, conn, fw, req)
	if err != nil {
		fw.fail(err)
		return
	}
	fw.exit(code)
}

func (r *Runtime) exec(ctx context.Context, conn net.Conn, fw *frameWriter, req *api.ExecRequest) (int32, error) {
	c, err := r.get(req.ContainerId)
	if err != nil {
		return 0, err
	}
	if st, _ := c.current(); st != stateRunning {
		return 0, fmt.Errorf("exec in container %s: it is %s: %w", c.id, st, errdefs.ErrFailedPrecondition)
	}
	var proc specs.Process
	if err := json.Unmarshal(req.Process, &proc); err != nil || len(proc.Args) == 0 {
		return 0, fmt.Errorf("exec in container %s: process spec without args (%v): %w", c.id, err, errdefs.ErrInvalidArgument)
	}
	p, err := r.startExec(c, req, proc.Terminal)
	if err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", c.id, err)
	}
	defer p.cleanup()
	if err := fw.frame(api.FrameReady, nil); err != nil {
		p.kill()
		<-p.crunEnd
		return 0, err
	}
	return r.runExec(ctx, conn, fw, p, time.Duration(req.TimeoutNs))
}

// startExec writes the process spec and starts crun exec with the
// process's stdio: pipes, or a console socket for a terminal.
func (r *Runtime) startExec(c *container, req *api.ExecRequest, tty bool) (p *execProc, err error) {
	f, err := os.CreateTemp(c.bundle, "exec-*.json")
	if err != nil {
		return nil, err
	}
	p = &execProc{files: f.Name(), exit: make(chan Exit, 1), crunEnd: make(chan struct{})}
	defer func() {
		if err != nil {
			p.cleanup()
		}
	}()
	_, err = f.Write(req.Process)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if tty {
		return p, r.startExecTTY(c, p, req.Stdin)
	}
	return p, r.startExecPipes(c, p, req.Stdin)
}

func (r *Runtime) execArgv(c *container, p *execProc, extra ...string) []string {
	args := append([]string{"--process", p.files, "--pid-file", p.files + ".pid"}, extra...)
	return r.crun.argv(p.files+".log", "exec", append(args, c.id)...)
}

func (r *Runtime) startExecPipes(c *container, p *execProc, withStdin bool) error {
	pipes, err := newStdioPipes(withStdin)
	if err != nil {
		return err
	}
	p.stdin = pipes.stdin
	p.outputs = map[byte]*os.File{api.FrameStdout: pipes.stdout, api.FrameStderr: pipes.stderr}
	err = p.start(r.crun.reaper, r.execArgv(c, p), pipes.child)
	closeFiles(pipes.child)
	return err
}

func (r *Runtime) startExecTTY(c *container, p *execProc, withStdin bool) error {
	cs, err := newConsoleSocket(r.cfg.TempDir)
	if err != nil {
		return err
	}
	defer cs.close()
	if err := p.start(r.crun.reaper, r.execArgv(c, p, "--console-socket", cs.path), nil); err != nil {
		return err
	}
	go func() {
		<-p.crunEnd
		// A pty master crun sent before it exited is queued: still take it.
		_ = cs.l.SetDeadline(time.Now().Add(time.Second))
	}()
	master, err := cs.receive(time.Now().Add(execStartWait))
	if err != nil {
		p.kill()
		<-p.crunEnd
		if msg := logErrors(p.files + ".log"); msg != "" {
			return &crunError{Command: "exec", Code: (<-p.exit).Code(), Message: msg}
		}
		return err
	}
	p.master = master
	if withStdin {
		p.stdin = master
	}
	p.outputs = map[byte]*os.File{api.FrameStdout: master}
	return nil
}

// start starts crun exec and relays its exit to p.exit and p.crunEnd.
func (p *execProc) start(reaper *Reaper, argv []string, files []*os.File) error {
	proc, err := reaper.Start(argv, files)
	if err != nil {
		close(p.crunEnd)
		return err
	}
	p.crun = proc
	go func() {
		p.exit <- <-proc.Exit
		close(p.crunEnd)
	}()
	return nil
}

// runExec relays the process's stdio until crun exits; the timeout, the
// host going away or ctx ending kill the process first.
func (r *Runtime) runExec(ctx context.Context, conn net.Conn, fw *frameWriter, p *execProc, timeout time.Duration) (int32, error) {
	var outputs sync.WaitGroup
	for typ, f := range p.outputs {
		outputs.Add(1)
		go func() {
			defer outputs.Done()
			copyOutput(fw.of(typ), f)
		}()
	}
	hostGone := make(chan struct{})
	go func() {
		_ = readInbound(conn, p.inbound())
		close(hostGone)
	}()
	defer func() { _ = conn.SetReadDeadline(time.Now()) }() // ends readInbound
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	var why error
	select {
	case <-p.crunEnd:
	case <-expired:
		why = fmt.Errorf("timeout: the process ran longer than %v and was killed: %w", timeout, context.DeadlineExceeded)
	case <-hostGone:
		why = errors.New("the host closed the stream")
	case <-ctx.Done():
		why = ctx.Err()
	}
	if why != nil {
		p.kill()
		<-p.crunEnd
	}
	p.drain(&outputs)
	if why != nil {
		return 0, why
	}
	return p.result()
}

// result is the process's exit code, or crun's error if crun failed to run
// it (crun logs its own failures; the process's output is not in that log).
func (p *execProc) result() (int32, error) {
	e := <-p.exit
	if msg := logErrors(p.files + ".log"); msg != "" {
		return 0, &crunError{Command: "exec", Code: e.Code(), Message: msg}
	}
	return e.Code(), nil
}

// drain waits (bounded) for the outputs to end once crun has exited: a
// background child of the process may hold them.
func (p *execProc) drain(outputs *sync.WaitGroup) {
	done := make(chan struct{})
	go func() {
		outputs.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(outputDrain):
		for _, f := range p.outputs {
			f.Close()
		}
		<-done
	}
}

// inbound takes the host's stdin (FrameCloseStdin closes a stdin pipe; a
// terminal's master also carries the output and stays open) and resizes
// a terminal.
func (p *execProc) inbound() inbound {
	var h inbound
	if p.master != nil {
		h.resize = func(w, ht uint16) { _ = setWinSize(p.master, w, ht) }
	}
	if p.stdin == nil {
		return h
	}
	h.stdin = func(b []byte) error { _, err := p.stdin.Write(b); return err }
	if p.master == nil {
		h.closeStdin = func() { p.stdin.Close() }
	}
	return h
}

// kill SIGKILLs the process (its pid from crun's pid file), or crun while
// there is no pid yet.
func (p *execProc) kill() {
	if pid, err := readPidFile(p.files + ".pid"); err == nil {
		_ = unix.Kill(pid, unix.SIGKILL)
		return
	}
	select {
	case <-p.crunEnd:
	default:
		_ = unix.Kill(p.crun.Pid, unix.SIGKILL)
	}
}

// cleanup closes the stdio and removes the process's files.
func (p *execProc) cleanup() {
	closeFiles([]*os.File{p.stdin, p.master})
	for _, f := range p.outputs {
		f.Close()
	}
	for _, suffix := range []string{"", ".pid", ".log"} {
		os.Remove(p.files + suffix)
	}
}

// copyOutput copies a process's output to w until it ends. A failed write
// (the host gone) stops the copy; the caller kills the process.
func copyOutput(w io.Writer, f *os.File) {
	buf := make([]byte, api.MaxFrame)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF, EIO of a pty whose slave is closed, or closed
		}
	}
}

// readPidFile reads a pid file crun wrote.
func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var pid int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &pid); err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s holds %q", path, b)
	}
	return pid, nil
}
