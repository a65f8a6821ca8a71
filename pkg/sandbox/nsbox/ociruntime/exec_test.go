package ociruntime_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/sandbox/nsbox/ociruntime"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestExec(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		stdin      string
		timeout    time.Duration
		wantCode   int
		wantStdout string
		wantStderr string
		wantLen    int // of stdout, when wantStdout is not set
		wantErr    error
	}{
		{name: "output", args: []string{"echo", "hi"}, wantStdout: "hi\n"},
		{name: "exit code", args: []string{"sh", "-c", "echo bad >&2; exit 7"}, wantCode: 7, wantStderr: "bad\n"},
		{name: "stdin", args: []string{"cat"}, stdin: "in and out", wantStdout: "in and out"},
		{name: "timeout", args: []string{"sleep", "100"}, timeout: 300 * time.Millisecond, wantErr: context.DeadlineExceeded},
		{name: "much output", args: []string{"sh", "-c", "yes 0123456789 | head -c 1000000"}, wantLen: 1000000},
	}
	for _, name := range runtimes {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, name)
			c := e.run(t, "sleep", "1000")
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					var stdout, stderr bytes.Buffer
					o := ociruntime.ExecOptions{
						Process: &specs.Process{Args: tt.args, Env: []string{"PATH=/bin"}},
						Stdout:  &stdout, Stderr: &stderr, Timeout: tt.timeout,
					}
					if tt.stdin != "" {
						o.Stdin = strings.NewReader(tt.stdin)
					}
					start := time.Now()
					code, err := e.rt.Exec(context.Background(), c.id, o)
					if tt.wantErr != nil {
						if !errors.Is(err, tt.wantErr) {
							t.Fatalf("Exec = %d, %v; want %v", code, err, tt.wantErr)
						}
						if d := time.Since(start); d > 10*time.Second {
							t.Errorf("Exec took %v after its timeout", d)
						}
						return
					}
					if err != nil || code != tt.wantCode {
						t.Fatalf("Exec = %d, %v; want %d (stderr %q)", code, err, tt.wantCode, stderr.String())
					}
					if tt.wantStdout != "" && stdout.String() != tt.wantStdout {
						t.Errorf("stdout = %q, want %q", stdout.String(), tt.wantStdout)
					}
					if tt.wantLen != 0 && stdout.Len() != tt.wantLen {
						t.Errorf("stdout has %d bytes, want %d", stdout.Len(), tt.wantLen)
					}
					if stderr.String() != tt.wantStderr {
						t.Errorf("stderr = %q, want %q", stderr.String(), tt.wantStderr)
					}
				})
			}
			// The timed-out exec's process did not outlive its Exec.
			var ps bytes.Buffer
			if _, err := e.rt.Exec(context.Background(), c.id, ociruntime.ExecOptions{
				Process: &specs.Process{Args: []string{"sh", "-c", "for p in /proc/[0-9]*; do cat $p/cmdline; echo; done"}, Env: []string{"PATH=/bin"}}, Stdout: &ps,
			}); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(ps.String(), "sleep\x00100\x00") {
				t.Errorf("the timed-out exec's sleep still runs: %q", ps.String())
			}
		})
	}
}

// slowWriter stalls on its first write, as a client (or a daemon starved
// of CPU by a hundred runtime processes) that is slow to take output.
type slowWriter struct {
	mu    sync.Mutex
	b     bytes.Buffer
	stall time.Duration
}

func (w *slowWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.b.Len() == 0 {
		time.Sleep(w.stall)
	}
	return w.b.Write(p)
}

func (w *slowWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// What the process wrote before it exited reaches the caller however long
// the caller takes over it: only a pipe that stays empty and open after
// the exit (a background child holds it) is cut, after execWaitDelay.
func TestExecOutputOfASlowReader(t *testing.T) {
	for _, name := range runtimes {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, name)
			c := e.run(t, "sleep", "1000")
			out := &slowWriter{stall: 3 * time.Second}
			code, err := e.rt.Exec(context.Background(), c.id, ociruntime.ExecOptions{
				Process: &specs.Process{Args: []string{"sh", "-c", "echo first; sleep 0.2; echo second; exit 3"}, Env: []string{"PATH=/bin"}},
				Stdout:  out,
			})
			if err != nil || code != 3 {
				t.Fatalf("Exec = %d, %v; want 3", code, err)
			}
			if got := out.String(); got != "first\nsecond\n" {
				t.Errorf("stdout = %q, want both lines", got)
			}
			// A background child that keeps the output open is left after
			// the delay, with what it wrote before (runc's own relay of
			// the output waits for the child; crun hands the pipe over).
			start := time.Now()
			var bg bytes.Buffer
			code, err = e.rt.Exec(context.Background(), c.id, ociruntime.ExecOptions{
				Process: &specs.Process{Args: []string{"sh", "-c", "echo fg; sleep 8 & exit 0"}, Env: []string{"PATH=/bin"}},
				Stdout:  &bg,
			})
			if err != nil || code != 0 || bg.String() != "fg\n" {
				t.Errorf("Exec with a background child = %d, %v, %q; want 0, \"fg\\n\"", code, err, bg.String())
			}
			if d := time.Since(start); name == "crun" && d > 6*time.Second {
				t.Errorf("Exec with a background child took %v", d)
			}
		})
	}
}
