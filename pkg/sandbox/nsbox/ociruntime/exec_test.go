package ociruntime_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
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
