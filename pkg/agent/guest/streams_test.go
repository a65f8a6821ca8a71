package guest

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// process is an exec's process spec.
func process(t *testing.T, terminal bool, args ...string) []byte {
	caps := []string{"CAP_KILL", "CAP_SETUID", "CAP_SETGID"}
	b, err := json.Marshal(&specs.Process{
		Args: args, Cwd: "/", Env: []string{"PATH=/bin", "TERM=xterm"}, Terminal: terminal,
		Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runExec runs one exec to its last frame; script talks to it after Ready.
func (e *hostEnv) runExec(t *testing.T, req *api.ExecRequest, script func(conn net.Conn)) *procResult {
	t.Helper()
	conn := e.stream(t, api.StreamExec, req)
	res := &procResult{}
	if script != nil {
		readUntil(t, conn, res, func(r *procResult) bool { return r.ready })
		if res.ready {
			script(conn)
		}
	}
	readUntil(t, conn, res, nil)
	return res
}

// sleepers lists the pids of the container's processes running sleep.
func (e *hostEnv) sleepers(t *testing.T, id string) string {
	t.Helper()
	res := e.runExec(t, &api.ExecRequest{ContainerId: id, Process: process(t, false, "pidof", "sleep")}, nil)
	return strings.TrimSpace(res.stdout.String())
}

func (e *hostEnv) testExec(t *testing.T) {
	const id = "execs"
	e.create(t, &api.CreateContainerRequest{Id: id, Spec: e.spec(t, id, []string{"sleep", "1000"})})
	e.start(t, id)
	tests := []struct {
		name                 string
		req                  *api.ExecRequest
		script               func(conn net.Conn)
		stdout, stderr, fail string
		exit                 int32
		echoed               bool // stdout ends with .stdout (a terminal echoes stdin first)
	}{
		{name: "stdout, stderr, exit code", req: &api.ExecRequest{Process: process(t, false, "sh", "-c", "echo eo; echo ee >&2; exit 7")},
			stdout: "eo\n", stderr: "ee\n", exit: 7},
		{name: "stdin", req: &api.ExecRequest{Stdin: true, Process: process(t, false, "cat")},
			script: func(c net.Conn) {
				send(t, c, api.FrameStdin, []byte("abc"))
				send(t, c, api.FrameCloseStdin, nil)
			}, stdout: "abc"},
		{name: "terminal", req: &api.ExecRequest{Stdin: true, Process: process(t, true, "sh", "-c", "read x; [ -t 0 ] && echo is-tty; stty size")},
			script: func(c net.Conn) {
				send(t, c, api.FrameResize, api.ResizePayload(100, 30))
				send(t, c, api.FrameStdin, []byte("go\r"))
			}, stdout: "is-tty\r\n30 100\r\n", echoed: true},
		{name: "missing binary", req: &api.ExecRequest{Process: process(t, false, "nosuch")}, fail: "not found"},
		{name: "timeout", req: &api.ExecRequest{Process: process(t, false, "sleep", "99"), TimeoutNs: int64(300 * time.Millisecond)},
			fail: "timeout"},
		{name: "unknown container", req: &api.ExecRequest{ContainerId: "nope", Process: process(t, false, "true")}, fail: "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.req.ContainerId == "" {
				tt.req.ContainerId = id
			}
			res := e.runExec(t, tt.req, tt.script)
			if tt.fail != "" {
				if !strings.Contains(res.err, tt.fail) {
					t.Errorf("error frame %q, want one with %q (exit %v)", res.err, tt.fail, res.exit)
				}
				return
			}
			out := res.stdout.String()
			if tt.echoed && strings.HasSuffix(out, tt.stdout) {
				out = tt.stdout
			}
			if res.exit == nil || *res.exit != tt.exit || out != tt.stdout || res.stderr.String() != tt.stderr {
				t.Errorf("exit %v stdout %q stderr %q err %q; want %d %q %q", res.exit, res.stdout.String(), res.stderr.String(), res.err, tt.exit, tt.stdout, tt.stderr)
			}
		})
	}
	if got := e.sleepers(t, id); got != "1" {
		t.Errorf("sleeping after the timed-out exec: pids %q, want only the init (1)", got)
	}
	t.Run("the host closing the stream kills it", func(t *testing.T) {
		conn := e.stream(t, api.StreamExec, &api.ExecRequest{ContainerId: id, Process: process(t, false, "sleep", "98")})
		readUntil(t, conn, &procResult{}, func(r *procResult) bool { return r.ready })
		conn.Close()
		deadline := time.Now().Add(5 * time.Second)
		for e.sleepers(t, id) != "1" && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if got := e.sleepers(t, id); got != "1" {
			t.Errorf("sleeping after the stream closed: pids %q, want only the init (1)", got)
		}
	})
	e.removeAndCheck(t, id)
}

// attachUntil reads an attach stream until its stdout has want.
func attachUntil(t *testing.T, conn net.Conn, res *procResult, want string) {
	t.Helper()
	readUntil(t, conn, res, func(r *procResult) bool { return strings.Contains(r.stdout.String(), want) })
	if !strings.Contains(res.stdout.String(), want) {
		t.Fatalf("attach: stdout %q, want %q (exit %v, error %q)", res.stdout.String(), want, res.exit, res.err)
	}
}

func (e *hostEnv) testAttach(t *testing.T) {
	const id = "attached"
	logPath := filepath.Join(e.dir, id+".log")
	script := `while read line; do echo "got $line"; echo "err $line" >&2; done; echo stdin-closed; sleep 1000`
	e.create(t, &api.CreateContainerRequest{Id: id, LogPath: logPath, Stdin: true, StdinOnce: true,
		Spec: e.spec(t, id, []string{"sh", "-c", script})})
	e.start(t, id)
	a1 := e.stream(t, api.StreamAttach, &api.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Stderr: true})
	a2 := e.stream(t, api.StreamAttach, &api.AttachRequest{ContainerId: id, Stdout: true})
	r1, r2 := &procResult{}, &procResult{}
	send(t, a1, api.FrameStdin, []byte("one\n"))
	attachUntil(t, a1, r1, "got one")
	readUntil(t, a1, r1, func(r *procResult) bool { return strings.Contains(r.stderr.String(), "err one") })

	// Log rotation: the host renames the file, the agent reopens the path.
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := e.call(func(ctx context.Context, s api.AgentService) error {
		_, err := s.ReopenLog(ctx, &api.ContainerRequest{Id: id})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	send(t, a1, api.FrameStdin, []byte("two\n"))
	attachUntil(t, a1, r1, "got two")
	attachUntil(t, a2, r2, "got two")
	e.checkStatsAndUpdate(t, id)

	// stdin_once: the first attach closing stdin closes the container's.
	send(t, a1, api.FrameCloseStdin, nil)
	attachUntil(t, a1, r1, "stdin-closed")
	a1.Close()

	if err := e.call(func(ctx context.Context, s api.AgentService) error {
		_, err := s.SignalContainer(ctx, &api.SignalContainerRequest{Id: id, Signal: 9, All: true})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if exit := e.wait(t, id); exit.ExitCode != 137 || exit.OomKilled {
		t.Errorf("exit = %v, want 137 without OOM", exit)
	}
	readUntil(t, a2, r2, nil)
	if r2.exit == nil || *r2.exit != 137 || r2.stderr.Len() != 0 {
		t.Errorf("observer: exit %v, stderr %q; want 137 and no stderr", r2.exit, r2.stderr.String())
	}
	e.checkAttachLog(t, logPath)
	e.checkAfterExit(t, id)
	e.removeAndCheck(t, id)
}

func (e *hostEnv) checkAttachLog(t *testing.T, logPath string) {
	t.Helper()
	for path, want := range map[string][]string{
		logPath + ".1": {"stdout F got one", "stderr F err one"},
		logPath:        {"stdout F got two", "stderr F err two", "stdout F stdin-closed"},
	} {
		got := strings.Join(logLines(t, path), "\n")
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: no %q in\n%s", filepath.Base(path), w, got)
			}
		}
	}
}

// checkAfterExit: an attach to an exited container ends at once with its
// exit code; signalling it is not an error.
func (e *hostEnv) checkAfterExit(t *testing.T, id string) {
	t.Helper()
	res := &procResult{}
	readUntil(t, e.stream(t, api.StreamAttach, &api.AttachRequest{ContainerId: id, Stdout: true}), res, nil)
	if res.exit == nil || *res.exit != 137 {
		t.Errorf("attach after exit: exit %v, error %q", res.exit, res.err)
	}
	if err := e.call(func(ctx context.Context, s api.AgentService) error {
		_, err := s.SignalContainer(ctx, &api.SignalContainerRequest{Id: id, Signal: 15})
		return err
	}); err != nil {
		t.Errorf("signal after exit: %v", err)
	}
}

func (e *hostEnv) checkStatsAndUpdate(t *testing.T, id string) {
	t.Helper()
	resp, st := e.stats(t, id)
	if c := resp.Containers[0]; c.Processes < 1 || c.Threads < c.Processes || c.FileDescriptors < 3 {
		t.Errorf("processes %d threads %d fds %d", c.Processes, c.Threads, c.FileDescriptors)
	}
	if st.Memory.Usage == 0 || resp.MemoryTotalBytes == 0 || resp.MemoryAvailableBytes == 0 || resp.CpuUsageNs == 0 {
		t.Errorf("stats: memory %d, guest total %d available %d cpu %d", st.Memory.Usage, resp.MemoryTotalBytes, resp.MemoryAvailableBytes, resp.CpuUsageNs)
	}
	const limit = 100 << 20
	res, _ := json.Marshal(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(limit))}})
	if err := e.call(func(ctx context.Context, s api.AgentService) error {
		_, err := s.UpdateContainer(ctx, &api.UpdateContainerRequest{Id: id, Resources: res})
		return err
	}); err != nil {
		t.Fatalf("update: %v", err)
	}
	if _, st := e.stats(t, id); st.Memory.Limit != limit {
		t.Errorf("memory limit after update %d, want %d", st.Memory.Limit, limit)
	}
}

func ptr[T any](v T) *T { return &v }

func (e *hostEnv) testTerminal(t *testing.T) {
	const id = "tty"
	logPath := filepath.Join(e.dir, id+".log")
	e.create(t, &api.CreateContainerRequest{Id: id, LogPath: logPath, Tty: true, Stdin: true,
		Spec: e.spec(t, id, []string{"sh"}, withTTY)})
	e.start(t, id)
	a := e.stream(t, api.StreamAttach, &api.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Stderr: true})
	res := &procResult{}
	send(t, a, api.FrameResize, api.ResizePayload(120, 40))
	send(t, a, api.FrameStdin, []byte("stty size; echo hi-$((1+2)) >&2\r"))
	attachUntil(t, a, res, "40 120")
	attachUntil(t, a, res, "hi-3")
	send(t, a, api.FrameStdin, []byte("exit 5\r"))
	readUntil(t, a, res, nil)
	if res.exit == nil || *res.exit != 5 || res.stderr.Len() != 0 {
		t.Errorf("attach: exit %v stderr %q, want 5 and all output on stdout", res.exit, res.stderr.String())
	}
	if exit := e.wait(t, id); exit.ExitCode != 5 {
		t.Errorf("exit = %v", exit)
	}
	if got := strings.Join(logLines(t, logPath), "\n"); !strings.Contains(got, "stdout F hi-3") || strings.Contains(got, "stderr") {
		t.Errorf("log of a terminal:\n%s", got)
	}
	e.removeAndCheck(t, id)
}

func (e *hostEnv) testOOM(t *testing.T) {
	const id = "oom"
	e.create(t, &api.CreateContainerRequest{Id: id,
		Spec: e.spec(t, id, []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"}, withMemory(16<<20))})
	e.start(t, id)
	if exit := e.wait(t, id); exit.ExitCode != 137 || !exit.OomKilled {
		t.Errorf("exit = %v, want 137 OOM-killed", exit)
	}
	e.removeAndCheck(t, id)
}

// freePort is a TCP port nothing listens on (just now).
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (e *hostEnv) testPortForward(t *testing.T) {
	const id = "web"
	port := freePort(t)
	e.create(t, &api.CreateContainerRequest{Id: id,
		Spec: e.spec(t, id, []string{"nc", "-l", "-p", strconv.Itoa(port), "-e", "cat"})})
	e.start(t, id)
	var conn net.Conn
	deadline := time.Now().Add(10 * time.Second)
	for conn == nil {
		c := e.stream(t, api.StreamPort, &api.PortForwardRequest{Port: int32(port)})
		typ, p, err := api.ReadFrame(c)
		switch {
		case err == nil && typ == api.FrameReady:
			conn = c
		case err == nil && typ == api.FrameError && strings.Contains(string(p), "connection refused") && time.Now().Before(deadline):
			c.Close() // nc is not listening yet
			time.Sleep(50 * time.Millisecond)
		default:
			t.Fatalf("port forward: frame %d %q, %v", typ, p, err)
		}
	}
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	conn.Close() // a yamux stream's Close is a half-close: the answer still comes
	b, err := io.ReadAll(conn)
	if err != nil || string(b) != "ping\n" {
		t.Errorf("echo: %q, %v", b, err)
	}
	if exit := e.wait(t, id); exit.ExitCode != 0 {
		t.Errorf("nc exit = %v", exit)
	}
	e.removeAndCheck(t, id)
}
