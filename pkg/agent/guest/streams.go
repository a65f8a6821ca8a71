package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// frames writes frames to a stream, one writer at a time, each within a
// bound (a host that stopped reading is cut off).
type frames struct {
	mu   sync.Mutex
	conn net.Conn
}

func (f *frames) send(typ byte, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_ = f.conn.SetWriteDeadline(time.Now().Add(subscriberWrite))
	return api.WriteFrame(f.conn, typ, p)
}

// writer is an io.Writer of typ frames.
func (f *frames) writer(typ byte) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		if err := f.send(typ, p); err != nil {
			return 0, err
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

// input applies the host's frames (stdin, its end, terminal sizes) until
// the stream ends; it returns when it does.
func input(conn net.Conn, stdin func() *os.File, closeStdin func(), term func() *os.File) {
	for {
		typ, p, err := api.ReadFrame(conn)
		if err != nil {
			return
		}
		switch typ {
		case api.FrameStdin:
			if f := stdin(); f != nil {
				_, _ = f.Write(p)
			}
		case api.FrameCloseStdin:
			closeStdin()
		case api.FrameResize:
			if w, h, err := api.ParseResize(p); err == nil {
				if t := term(); t != nil {
					_ = resize(t, w, h)
				}
			}
		}
	}
}

// ServeExec runs the process of req in its container with `crun exec`, in
// the foreground: the runtime's exit status is the process's.
func (s *Service) ServeExec(ctx context.Context, conn net.Conn, req *api.ExecRequest) {
	defer conn.Close()
	out := &frames{conn: conn}
	code, err := s.exec(ctx, conn, out, req)
	if err != nil {
		_ = out.send(api.FrameError, []byte(err.Error()))
		return
	}
	_ = out.send(api.FrameExit, api.ExitPayload(code))
}

func (s *Service) exec(ctx context.Context, conn net.Conn, out *frames, req *api.ExecRequest) (int32, error) {
	c, err := s.get(req.GetContainerId())
	if err != nil {
		return -1, err
	}
	if exited(c) {
		return -1, fmt.Errorf("container %s is not running", c.id)
	}
	dir, err := os.MkdirTemp(c.bundle, "exec-")
	if err != nil {
		return -1, err
	}
	defer os.RemoveAll(dir)
	procFile := filepath.Join(dir, "process.json")
	if err := os.WriteFile(procFile, req.GetProcess(), 0o600); err != nil {
		return -1, err
	}
	tty := strings.Contains(string(req.GetProcess()), `"terminal":true`)
	p, err := s.startExec(ctx, c, dir, procFile, tty, req.GetStdin(), out)
	if err != nil {
		return -1, err
	}
	defer p.closeIO()
	_ = out.send(api.FrameReady, nil)
	hostGone := make(chan struct{})
	go func() {
		input(conn, p.stdinFile, p.closeStdin, func() *os.File { return p.term })
		close(hostGone) // the host ended the stream
	}()
	var timeout <-chan time.Time
	if req.GetTimeoutNs() > 0 {
		t := time.NewTimer(time.Duration(req.GetTimeoutNs()))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case ws := <-p.exit:
		p.drain()
		return exitCode(ws), nil
	case <-timeout:
		p.kill()
		return -1, fmt.Errorf("timeout: killed after %v", time.Duration(req.GetTimeoutNs()))
	case <-hostGone:
		p.kill()
		return -1, errors.New("the client went away")
	case <-ctx.Done():
		p.kill()
		return -1, ctx.Err()
	}
}

// execProcess is a running `crun exec`.
type execProcess struct {
	pid     int
	pidFile string
	exit    <-chan unix.WaitStatus
	out     *output
	mu      sync.Mutex
	stdin   *os.File
	term    *os.File
}

func (s *Service) startExec(ctx context.Context, c *container, dir, procFile string, tty, stdin bool, fr *frames) (*execProcess, error) {
	p := &execProcess{pidFile: filepath.Join(dir, "exec.pid"), out: newOutput(&criLog{})}
	p.out.subscribe(fr.writer(api.FrameStdout), fr.writer(api.FrameStderr))
	args := []string{"--root", s.runtimeRoot(), "exec", "--process", procFile, "--pid-file", p.pidFile}
	var console *consoleSocket
	var child stdio
	var err error
	if tty {
		if console, err = listenConsole(filepath.Join(dir, "console.sock")); err != nil {
			return nil, err
		}
		defer console.close()
		args = append(args, "--tty", "--console-socket", console.path)
		child, err = nullStdio()
	} else {
		child, err = p.pipes(stdin)
	}
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(s.Runtime, append(args, c.id)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = child.in, child.out, child.err
	p.exit, err = s.Reaper.Start(cmd)
	child.close()
	if err != nil {
		p.closeIO()
		return nil, err
	}
	p.pid = cmd.Process.Pid
	if tty {
		master, err := console.receive(ctx)
		if err != nil {
			p.kill()
			p.closeIO()
			return nil, err
		}
		p.term = master
		if stdin {
			p.stdin = master
		}
		p.out.read("stdout", dupFile(master))
	}
	return p, nil
}

func (p *execProcess) pipes(stdin bool) (stdio, error) {
	var child stdio
	outR, outW, err := os.Pipe()
	if err != nil {
		return child, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return child, err
	}
	child.out, child.err = outW, errW
	if stdin {
		inR, inW, err := os.Pipe()
		if err != nil {
			child.close()
			return child, err
		}
		child.in, p.stdin = inR, inW
	} else if child.in, err = os.Open(os.DevNull); err != nil {
		child.close()
		return child, err
	}
	p.out.read("stdout", outR)
	p.out.read("stderr", errR)
	return child, nil
}

func (p *execProcess) stdinFile() *os.File {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdin
}

func (p *execProcess) closeStdin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdin != nil && p.stdin != p.term {
		_ = p.stdin.Close()
		p.stdin = nil
	}
}

// drain waits for the process's output after it exited.
func (p *execProcess) drain() {
	if p.term != nil {
		// The terminal's slave may outlive the process in a background
		// child: do not wait long for its EOF.
		_ = p.out.drain(200 * time.Millisecond)
		return
	}
	_ = p.out.drain(outputDrain)
}

// kill ends the exec'd process (and the runtime waiting for it).
func (p *execProcess) kill() {
	if b, err := os.ReadFile(p.pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
	_ = unix.Kill(p.pid, unix.SIGKILL)
	select {
	case <-p.exit:
	case <-time.After(killWait):
	}
}

// killWait bounds the wait for a killed process.
const killWait = 5 * time.Second

func (p *execProcess) closeIO() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdin != nil && p.stdin != p.term {
		_ = p.stdin.Close()
	}
	p.stdin = nil
	if p.term != nil {
		_ = p.term.Close()
		p.term = nil
	}
}
