package ociruntime_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/nsbox/ociruntime"
	"github.com/cradle-runtime/cradle/pkg/testutil"
)

// newLoggingEnv is an env of the named runtime whose binary is a wrapper
// that logs each invocation's arguments to the returned file.
func newLoggingEnv(t *testing.T, name string) (*env, string) {
	t.Helper()
	e := newEnv(t, name)
	binPath := testutil.RequireBinary(t, name)
	dir := t.TempDir()
	logFile := filepath.Join(dir, "calls")
	wrapper := filepath.Join(dir, name)
	script := "#!/bin/sh\necho \"$*\" >> " + logFile + "\nexec " + binPath + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	e.cfg.Binary = wrapper
	rt, err := ociruntime.New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.rt = rt
	return e, logFile
}

// ranStart reports whether the logged runtime ran `start`.
func ranStart(t *testing.T, logFile string) bool {
	t.Helper()
	for _, l := range strings.Split(readFile(t, logFile), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[2] == "start" { // --root DIR start ID
			return true
		}
	}
	return false
}

func waitExit(t *testing.T, e *env, id string, want int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := e.rt.Wait(ctx, id)
	if err != nil || st.ExitCode != want {
		t.Fatalf("Wait = %+v, %v; want exit code %d", st, err, want)
	}
}

// forEachRuntime runs f as a subtest per OCI runtime.
func forEachRuntime(t *testing.T, f func(t *testing.T, name string)) {
	for _, name := range runtimes {
		t.Run(name, func(t *testing.T) { f(t, name) })
	}
}

// A container is started through its exec FIFO, not by a `runtime start`
// process, and runs as one started by the runtime.
func TestStartWithoutRuntimeStart(t *testing.T) { forEachRuntime(t, testStartWithoutRuntimeStart) }

func testStartWithoutRuntimeStart(t *testing.T, name string) {
	e, calls := newLoggingEnv(t, name)
	c := e.create(t, "sh", "-c", "echo started; exit 7")
	if err := e.rt.Start(context.Background(), c.id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitExit(t, e, c.id, 7)
	if !strings.Contains(readFile(t, c.log), "started") {
		t.Errorf("log = %q, want the container's output", readFile(t, c.log))
	}
	if ranStart(t, calls) {
		t.Errorf("%s start ran:\n%s", name, readFile(t, calls))
	}
	if _, err := os.Lstat(filepath.Join(e.cfg.Root, c.id, "exec.fifo")); !os.IsNotExist(err) {
		t.Errorf("exec.fifo left after Start: %v", err)
	}
	// A second Start is refused as the runtime refuses it.
	if err := e.rt.Start(context.Background(), c.id); !errdefs.IsFailedPrecondition(err) && !errdefs.IsNotFound(err) {
		t.Errorf("second Start = %v, want FailedPrecondition", err)
	}
}

// Poststart hooks are run by `runtime start` (crun, newer runc): a spec
// with them is started by the runtime.
func TestStartWithPoststartHooksRunsRuntimeStart(t *testing.T) {
	forEachRuntime(t, testStartWithPoststartHooksRunsRuntimeStart)
}

func testStartWithPoststartHooksRunsRuntimeStart(t *testing.T, name string) {
	e, calls := newLoggingEnv(t, name)
	c := e.bundle(t, "true")
	cfgPath := filepath.Join(c.bundle, "config.json")
	var spec map[string]any
	if err := json.Unmarshal([]byte(readFile(t, cfgPath)), &spec); err != nil {
		t.Fatal(err)
	}
	spec["hooks"] = map[string]any{"poststart": []any{map[string]any{"path": testutil.RequireBinary(t, "true")}}}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	pid, err := e.rt.Create(context.Background(), ociruntime.CreateOptions{ID: c.id, Bundle: c.bundle, LogPath: c.log})
	if err != nil {
		t.Fatal(err)
	}
	c.pid = pid
	t.Cleanup(func() { e.deleteAndCheck(t, c) })
	if err := e.rt.Start(context.Background(), c.id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitExit(t, e, c.id, 0)
	if !ranStart(t, calls) {
		t.Errorf("%s start did not run:\n%s", name, readFile(t, calls))
	}
}

// A created container whose init was killed is refused promptly.
func TestStartAfterInitDied(t *testing.T) { forEachRuntime(t, testStartAfterInitDied) }

func testStartAfterInitDied(t *testing.T, name string) {
	e, _ := newLoggingEnv(t, name)
	c := e.create(t, "true")
	if err := syscall.Kill(c.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "init to die", func() bool { return exited(c.pid) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err := e.rt.Start(ctx, c.id)
	if !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Start = %v, want FailedPrecondition", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Start took %v", d)
	}
}

// A start that released init and crashed before removing the FIFO has
// started the container: the next Start completes it instead of waiting
// forever (as `runc start` would) or failing.
func TestStartAfterACrashMidStart(t *testing.T) { forEachRuntime(t, testStartAfterACrashMidStart) }

func testStartAfterACrashMidStart(t *testing.T, name string) {
	e, _ := newLoggingEnv(t, name)
	c := e.create(t, "sh", "-c", "echo released; sleep 1")
	fifo := filepath.Join(e.cfg.Root, c.id, "exec.fifo")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if st, err := e.rt.Status(ctx, c.id); err != nil || st.State != ociruntime.StateCreated {
		t.Fatalf("Status of the created container = %+v, %v; want created", st, err)
	}
	releaseLikeACrashedStart(t, name, fifo)
	waitFor(t, 10*time.Second, "the container's output", func() bool { return strings.Contains(readFile(t, c.log), "released") })
	if err := e.rt.Start(ctx, c.id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if _, err := os.Lstat(fifo); !os.IsNotExist(err) {
		t.Errorf("exec.fifo left after Start: %v", err)
	}
	st, err := e.rt.Status(ctx, c.id)
	if err != nil || (st.State != ociruntime.StateRunning && st.State != ociruntime.StateStopped) {
		t.Errorf("Status = %+v, %v; want running or stopped", st, err)
	}
	waitExit(t, e, c.id, 0)
}

// A daemon that crashed mid-start and restarts asks for the container's
// state before anyone starts it again (recovery, a listing): the runtime
// says created (its FIFO is there) but init was released and runs the
// container's process. Status says running and finishes that start.
func TestStatusAfterACrashMidStart(t *testing.T) { forEachRuntime(t, testStatusAfterACrashMidStart) }

func testStatusAfterACrashMidStart(t *testing.T, name string) {
	e, _ := newLoggingEnv(t, name)
	c := e.create(t, "sh", "-c", "echo released; sleep 30")
	fifo := filepath.Join(e.cfg.Root, c.id, "exec.fifo")
	releaseLikeACrashedStart(t, name, fifo)
	waitFor(t, 10*time.Second, "the container's output", func() bool { return strings.Contains(readFile(t, c.log), "released") })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := e.rt.Status(ctx, c.id)
	if err != nil || st.State != ociruntime.StateRunning || st.Pid != c.pid {
		t.Errorf("Status = %+v, %v; want running as pid %d", st, err, c.pid)
	}
	if _, err := os.Lstat(fifo); !os.IsNotExist(err) {
		t.Errorf("exec.fifo left after Status: %v", err)
	}
	if err := e.rt.Kill(ctx, c.id, syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	waitExit(t, e, c.id, 137)
}

// releaseLikeACrashedStart does what a start that crashed before removing
// the exec FIFO did: runc's init writes a byte to be taken, crun's reads
// one.
func releaseLikeACrashedStart(t *testing.T, name, fifo string) {
	t.Helper()
	flag, n := os.O_RDONLY, 0
	if name == "crun" {
		flag = os.O_WRONLY
	}
	f, err := os.OpenFile(fifo, flag, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if flag == os.O_RDONLY {
		n, err = f.Read(make([]byte, 1))
	} else {
		n, err = f.Write([]byte{0})
	}
	if n != 1 {
		t.Fatalf("release init through %s: %d, %v", fifo, n, err)
	}
}
