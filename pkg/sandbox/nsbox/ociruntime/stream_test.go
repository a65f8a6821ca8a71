package ociruntime_test

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/sandbox/nsbox/ociruntime"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestExecTerminal(t *testing.T) {
	for _, name := range runtimes {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, name)
			c := e.run(t, "sleep", "1000")
			resize := make(chan ociruntime.WinSize, 1)
			resize <- ociruntime.WinSize{Width: 100, Height: 30}
			stdinR, stdinW := io.Pipe()
			var out testutil.Buffer
			proc := &specs.Process{Terminal: true, Env: []string{"PATH=/bin"},
				Args: []string{"sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo on a tty; stty size; while read x; do [ \"$x\" = q ] && exit 4; stty size; done"}}
			type result struct {
				code int
				err  error
			}
			res := make(chan result, 1)
			go func() {
				code, err := e.rt.Exec(context.Background(), c.id, ociruntime.ExecOptions{Process: proc, Stdin: stdinR, Stdout: &out, Resize: resize})
				res <- result{code, err}
			}()
			waitFor(t, 20*time.Second, "the first size", func() bool { return strings.Contains(out.String(), "30 100") })
			resize <- ociruntime.WinSize{Width: 120, Height: 40}
			// The runtime passes the size on when SIGWINCH reaches it: ask
			// for the size until it shows, then end the shell.
			waitFor(t, 20*time.Second, "the new size", func() bool {
				if strings.Contains(out.String(), "40 120") {
					return true
				}
				_, _ = stdinW.Write([]byte("go\r"))
				time.Sleep(100 * time.Millisecond)
				return false
			})
			if _, err := stdinW.Write([]byte("q\r")); err != nil {
				t.Fatal(err)
			}
			r := <-res
			if r.err != nil || r.code != 4 {
				t.Fatalf("Exec = %d, %v; want 4 (output %q)", r.code, r.err, out.String())
			}
			if got := out.String(); !strings.Contains(got, "on a tty\r\n") || !strings.Contains(got, "40 120") {
				t.Errorf("output %q: want a tty, then the new size 40 120", got)
			}
			_ = stdinW.Close()
		})
	}
}

// createStdin creates and starts a container whose stdin is fed by attach
// clients (and which has a terminal if terminal is set).
func (e *env) createStdin(t *testing.T, terminal, stdinOnce bool, args ...string) container {
	t.Helper()
	c := e.bundle(t, args...)
	s := spec(e.rootfs, c.cgroup, args)
	s.Process.Terminal = terminal
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	pid, err := e.rt.Create(context.Background(), ociruntime.CreateOptions{
		ID: c.id, Bundle: c.bundle, LogPath: c.log, Stdin: true, StdinOnce: stdinOnce, Terminal: terminal})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	c.pid = pid
	t.Cleanup(func() { e.deleteAndCheck(t, c) })
	if err := e.rt.Start(context.Background(), c.id); err != nil {
		t.Fatal(err)
	}
	return c
}

// attach attaches until the returned cancel is called; the returned
// channel has Attach's result.
func (e *env) attach(t *testing.T, id string, o ociruntime.AttachOptions) (context.CancelFunc, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.rt.Attach(ctx, id, o) }()
	t.Cleanup(cancel)
	return cancel, done
}

func TestAttach(t *testing.T) {
	for _, name := range runtimes {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, name)
			c := e.createStdin(t, false, false, "sh", "-c", "while read l; do echo got $l; echo err $l >&2; done; echo stdin closed")
			for _, word := range []string{"one", "two"} { // the second client finds stdin still open
				stdinR, stdinW := io.Pipe()
				var out, errOut testutil.Buffer
				detach, done := e.attach(t, c.id, ociruntime.AttachOptions{Stdin: stdinR, Stdout: &out, Stderr: &errOut})
				waitFor(t, 20*time.Second, "output of "+word, func() bool {
					select {
					case err := <-done:
						t.Fatalf("Attach ended: %v", err)
					default:
					}
					_, _ = stdinW.Write([]byte(word + "\n"))
					return strings.Contains(out.String(), "got "+word) && strings.Contains(errOut.String(), "err "+word)
				})
				detach()
				if err := <-done; err != nil {
					t.Errorf("Attach after detaching = %v", err)
				}
				_ = stdinW.Close()
			}
			if st, err := e.rt.Status(context.Background(), c.id); err != nil || st.State != ociruntime.StateRunning {
				t.Fatalf("after detaching: %+v, %v; want it running", st, err)
			}
			if log := readFile(t, c.log); strings.Contains(log, "stdin closed") {
				t.Errorf("stdin was closed on detach: %q", log)
			}
		})
	}
}

func TestAttachStdinOnceTerminal(t *testing.T) {
	for _, name := range runtimes {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, name)
			c := e.createStdin(t, true, true, "sh", "-c", "while read l; do stty size; done; exit 3")
			resize := make(chan ociruntime.WinSize, 1)
			stdinR, stdinW := io.Pipe()
			var out testutil.Buffer
			_, done := e.attach(t, c.id, ociruntime.AttachOptions{Stdin: stdinR, Stdout: &out, Resize: resize})
			resize <- ociruntime.WinSize{Width: 111, Height: 33}
			waitFor(t, 20*time.Second, "the new size", func() bool {
				_, _ = stdinW.Write([]byte("\r"))
				return strings.Contains(out.String(), "33 111")
			})
			// stdin_once: ending stdin ends the container's (^D on a terminal).
			_, _ = stdinW.Write([]byte{4})
			_ = stdinW.Close()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Attach = %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Attach did not end when the container exited")
			}
			wctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if st, err := e.rt.Wait(wctx, c.id); err != nil || st.ExitCode != 3 {
				t.Errorf("Wait = %+v, %v; want exit code 3", st, err)
			}
		})
	}
}
