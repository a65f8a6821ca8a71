package ociruntime_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/nsbox/ociruntime"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// criLine is one line of a CRI log file.
var criLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) (stdout|stderr) F (.*)$`)

func TestRunToExit(t *testing.T) {
	for _, name := range runtimes {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, name)
			ctx := context.Background()
			c := e.create(t, "sh", "-c", "echo hello; echo oops >&2; exit 3")
			st, err := e.rt.Status(ctx, c.id)
			if err != nil || st.State != ociruntime.StateCreated || st.Pid != c.pid {
				t.Fatalf("Status after create = %+v, %v; want created with pid %d", st, err, c.pid)
			}
			if err := e.rt.Start(ctx, c.id); err != nil {
				t.Fatalf("Start: %v", err)
			}
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			got, err := e.rt.Wait(wctx, c.id)
			if err != nil {
				t.Fatalf("Wait: %v", err)
			}
			want := ociruntime.Status{State: ociruntime.StateStopped, ExitCode: 3, Exited: true}
			ignoreTime := cmpopts.IgnoreFields(ociruntime.Status{}, "FinishedAt")
			if d := cmp.Diff(want, got, ignoreTime); d != "" {
				t.Errorf("Wait (-want +got):\n%s", d)
			}
			if time.Since(got.FinishedAt) > time.Minute {
				t.Errorf("FinishedAt = %v", got.FinishedAt)
			}
			// A daemon restart: a new Runtime value over the same
			// directories sees the same container.
			again, err := ociruntime.New(e.cfg)
			if err != nil {
				t.Fatal(err)
			}
			st, err = again.Status(ctx, c.id)
			if err != nil {
				t.Fatalf("Status from a new Runtime: %v", err)
			}
			if d := cmp.Diff(got, st); d != "" {
				t.Errorf("Status from a new Runtime (-Wait +Status):\n%s", d)
			}
			checkLog(t, c.log, map[string]string{"hello": "stdout", "oops": "stderr"})
		})
	}
}

// checkLog checks that every line of the log is in the CRI format and that
// want's lines (text → stream) are there.
func checkLog(t *testing.T, path string, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(readFile(t, path)), "\n") {
		m := criLine.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("log line %q is not in the CRI format", l)
			continue
		}
		got[m[4]] = m[3]
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("log lines (-want +got):\n%s", d)
	}
}

func TestKillAcrossRestart(t *testing.T) {
	for _, name := range runtimes {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, name)
			ctx := context.Background()
			c := e.run(t, "sleep", "1000")
			again, err := ociruntime.New(e.cfg)
			if err != nil {
				t.Fatal(err)
			}
			st, err := again.Status(ctx, c.id)
			if err != nil || st.State != ociruntime.StateRunning || st.Pid != c.pid || st.Exited {
				t.Fatalf("Status = %+v, %v; want running with pid %d", st, err, c.pid)
			}
			// The limits live in the v1 controllers here: the init must be
			// in the spec's memory cgroup (crun too, through its v1 view).
			if got := memoryCgroup(t, c.pid); got != "" && got != c.cgroup {
				t.Errorf("init's memory cgroup = %q, want %q", got, c.cgroup)
			}
			if err := again.Kill(ctx, c.id, syscall.SIGKILL, false); err != nil {
				t.Fatalf("Kill: %v", err)
			}
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			st, err = again.Wait(wctx, c.id)
			if err != nil || st.ExitCode != 137 || !st.Exited {
				t.Fatalf("Wait = %+v, %v; want exit code 137", st, err)
			}
			if err := e.rt.Delete(ctx, c.id, false); err != nil {
				t.Errorf("Delete of a stopped container: %v", err)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	for _, name := range runtimes {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, name)
			ctx := context.Background()
			running := e.run(t, "sleep", "1000")
			if err := e.rt.Delete(ctx, running.id, false); !errors.Is(err, errdefs.ErrFailedPrecondition) {
				t.Errorf("Delete of a running container without force = %v, want ErrFailedPrecondition", err)
			}
			if err := e.rt.Kill(ctx, "nosuch", syscall.SIGTERM, false); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("Kill of an unknown container = %v, want ErrNotFound", err)
			}
			if _, err := e.rt.Status(ctx, "nosuch"); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("Status of an unknown container = %v, want ErrNotFound", err)
			}
			if err := e.rt.Delete(ctx, "nosuch", false); err != nil {
				t.Errorf("Delete of an unknown container = %v, want nil", err)
			}
			if _, err := e.rt.Create(ctx, ociruntime.CreateOptions{ID: running.id, Bundle: running.bundle, LogPath: running.log}); !errors.Is(err, errdefs.ErrAlreadyExists) {
				t.Errorf("Create of an existing id = %v, want ErrAlreadyExists", err)
			}
		})
	}
}

// TestCreateRollback fails Create at each step and checks that nothing is
// left and the error says why.
func TestCreateRollback(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(e *env, c *container, ctx *context.Context)
		wantMsg string
		wantErr error
	}{
		{
			name: "runtime fails",
			breakIt: func(e *env, c *container, _ *context.Context) {
				p := filepath.Join(c.bundle, "config.json")
				b, _ := os.ReadFile(p)
				_ = os.WriteFile(p, []byte(strings.Replace(string(b), e.rootfs, "/nonexistent-rootfs", 1)), 0o644)
			},
			wantMsg: "nonexistent-rootfs", wantErr: errdefs.ErrFailedPrecondition,
		},
		{
			name:    "no log directory",
			breakIt: func(_ *env, c *container, _ *context.Context) { c.log = "/nonexistent-logs/c.log" },
			wantMsg: "nonexistent-logs", wantErr: errdefs.ErrFailedPrecondition,
		},
		{
			name:    "conmon fails",
			breakIt: func(e *env, _ *container, _ *context.Context) { e.rt = mustNew(e, "/bin/false") },
			wantMsg: "conmon", wantErr: errdefs.ErrFailedPrecondition,
		},
		{
			name: "cancelled",
			breakIt: func(_ *env, _ *container, ctx *context.Context) {
				c, cancel := context.WithCancel(*ctx)
				cancel()
				*ctx = c
			},
			wantErr: context.Canceled,
		},
	}
	for _, name := range runtimes {
		t.Run(name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					e := newEnv(t, name)
					c := e.bundle(t, "true")
					ctx := context.Background()
					tt.breakIt(e, &c, &ctx)
					_, err := e.rt.Create(ctx, ociruntime.CreateOptions{ID: c.id, Bundle: c.bundle, LogPath: c.log})
					if !errors.Is(err, tt.wantErr) || !strings.Contains(fmt.Sprint(err), tt.wantMsg) {
						t.Fatalf("Create = %v, want %v mentioning %q", err, tt.wantErr, tt.wantMsg)
					}
					t.Logf("Create: %v", err)
					e.deleteAndCheck(t, c)
					assertNoProcessMentions(t, e.dir)
				})
			}
		})
	}
}

// mustNew is e's runtime with another conmon.
func mustNew(e *env, conmon string) *ociruntime.Runtime {
	cfg := e.cfg
	cfg.Conmon = conmon
	rt, err := ociruntime.New(cfg)
	if err != nil {
		panic(err)
	}
	return rt
}

func TestReopenLog(t *testing.T) {
	for _, name := range runtimes {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, name)
			ctx := context.Background()
			c := e.run(t, "sh", "-c", "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.05; done")
			waitFor(t, 10*time.Second, "first log lines", func() bool { return strings.Contains(readFile(t, c.log), "line1\n") })
			if err := os.Rename(c.log, c.log+".1"); err != nil {
				t.Fatal(err)
			}
			if err := e.rt.ReopenLog(ctx, c.id); err != nil {
				t.Fatalf("ReopenLog: %v", err)
			}
			if _, err := os.Stat(c.log); err != nil {
				t.Errorf("no new log file when ReopenLog returned: %v", err)
			}
			waitFor(t, 10*time.Second, "lines in the reopened log", func() bool { return strings.Count(readFile(t, c.log), "\n") >= 2 })
			old := readFile(t, c.log+".1")
			for _, l := range strings.Split(strings.TrimSpace(readFile(t, c.log)), "\n") {
				if !criLine.MatchString(l) {
					t.Errorf("new log line %q is not in the CRI format", l)
				}
				if strings.Contains(old, l[strings.LastIndex(l, " ")+1:]+"\n") {
					t.Errorf("line %q is in both files", l)
				}
			}
			if err := e.rt.Kill(ctx, c.id, syscall.SIGKILL, true); err != nil {
				t.Fatal(err)
			}
			if _, err := e.rt.Wait(ctx, c.id); err != nil {
				t.Fatal(err)
			}
			monitor, err := e.rt.MonitorPid(c.id)
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "conmon to exit", func() bool { return exited(monitor) })
			if err := e.rt.ReopenLog(ctx, c.id); !errors.Is(err, errdefs.ErrFailedPrecondition) {
				t.Errorf("ReopenLog after conmon exited = %v, want ErrFailedPrecondition", err)
			}
		})
	}
}

// memoryCgroup returns pid's v1 memory cgroup, or "" on a host without one.
func memoryCgroup(t *testing.T, pid int) string {
	t.Helper()
	for _, l := range strings.Split(readFile(t, fmt.Sprintf("/proc/%d/cgroup", pid)), "\n") {
		if f := strings.SplitN(l, ":", 3); len(f) == 3 && f[1] == "memory" {
			return f[2]
		}
	}
	return ""
}

// TestForcedDeleteOfExited: a forced Delete of a container whose exit
// conmon has recorded asks runc for nothing but the delete (no `state`, no
// `kill`: one runtime start less on kubelet's stop-then-remove path), and
// leaves nothing behind.
func TestForcedDeleteOfExited(t *testing.T) {
	e := newEnv(t, "runc")
	calls := filepath.Join(e.dir, "calls")
	wrapper := filepath.Join(e.dir, "runc-logged")
	script := fmt.Sprintf("#!/bin/sh\necho \"$*\" >> %s\nexec %s \"$@\"\n", calls, e.cfg.Binary)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	e.cfg.Binary = wrapper
	e.rt = mustNew(e, e.cfg.Conmon)
	ctx := context.Background()
	c := e.run(t, "sh", "-c", "exit 0")
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if st, err := e.rt.Wait(wctx, c.id); err != nil || !st.Exited {
		t.Fatalf("Wait = %+v, %v", st, err)
	}
	if err := os.Remove(calls); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Delete(ctx, c.id, true); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(readFile(t, calls)), "\n") {
		f := strings.Fields(l)
		got = append(got, strings.Join(f[2:], " ")) // past --root DIR
	}
	if d := cmp.Diff([]string{"delete --force " + c.id}, got); d != "" {
		t.Errorf("runtime calls of a forced delete of an exited container (-want +got):\n%s", d)
	}
}
