package guest

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
	"github.com/cradle-runtime/cradle/pkg/cgroup"
	"github.com/cradle-runtime/cradle/pkg/testutil"
)

// TestContainers runs the guest's container runtime on the host: real
// crun, real processes, a real agent session. The subtests share one
// runtime and run in order.
func TestContainers(t *testing.T) {
	e := newHostEnv(t)
	t.Run("exit code and CRI log", e.testExitAndLog)
	t.Run("failed create leaves nothing", e.testCreateFails)
	t.Run("remove before start", e.testRemoveCreated)
	t.Run("exec", e.testExec)
	t.Run("attach, stdin, log rotation, stats, signal", e.testAttach)
	t.Run("terminal", e.testTerminal)
	t.Run("OOM", e.testOOM)
	t.Run("port forward", e.testPortForward)
}

// logLines reads a CRI log: "<stream> <tag> <content>" per record, each
// record's time checked.
func logLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		ts, rest, _ := strings.Cut(sc.Text(), " ")
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("record %q: time: %v", sc.Text(), err)
		}
		out = append(out, rest)
	}
	return out
}

func (e *hostEnv) testExitAndLog(t *testing.T) {
	const id = "exits"
	logPath := filepath.Join(e.dir, id+".log")
	e.create(t, &api.CreateContainerRequest{
		Id: id, LogPath: logPath,
		Spec: e.spec(t, id, []string{"sh", "-c", "echo out; echo err >&2; printf 'no newline'; exit 3"}),
	})
	err := e.call(func(ctx context.Context, s api.AgentService) error {
		_, err := s.CreateContainer(ctx, &api.CreateContainerRequest{Id: id, Spec: e.spec(t, id, []string{"true"})})
		return err
	})
	if !errdefs.IsAlreadyExists(err) {
		t.Errorf("second create: %v, want AlreadyExists", err)
	}
	e.start(t, id)
	exit := e.wait(t, id)
	if exit.ExitCode != 3 || exit.OomKilled || exit.FinishedAtUnixNs == 0 {
		t.Errorf("exit = %v, want code 3", exit)
	}
	// Started through crun's exec FIFO, not by a crun process.
	if e.ranCrun(t, "start", id) {
		t.Errorf("crun start ran for %s", id)
	}
	if _, err := os.Lstat(filepath.Join(e.state, id, "exec.fifo")); err == nil {
		t.Errorf("exec.fifo of %s left after start", id)
	}
	if again := e.wait(t, id); again.ExitCode != 3 {
		t.Errorf("second wait = %v", again)
	}
	got := logLines(t, logPath)
	sort.Strings(got) // stdout and stderr may interleave either way
	want := []string{"stderr F err", "stdout F no newline", "stdout F out"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log:\n%s", diff)
	}
	var st *api.ContainerStateResponse
	_ = e.call(func(ctx context.Context, s api.AgentService) (err error) {
		st, err = s.ContainerState(ctx, &api.ContainerRequest{Id: id})
		return err
	})
	if !st.GetExited() || st.GetExit().GetExitCode() != 3 {
		t.Errorf("state = %v", st)
	}
	e.removeAndCheck(t, id)
}

// removeAndCheck removes id and checks it is gone: from the agent, from
// crun, its bundle and its cgroup; removing it again is fine.
func (e *hostEnv) removeAndCheck(t *testing.T, id string) {
	t.Helper()
	for range 2 {
		if err := e.call(func(ctx context.Context, s api.AgentService) error {
			_, err := s.RemoveContainer(ctx, &api.ContainerRequest{Id: id})
			return err
		}); err != nil {
			t.Fatalf("remove %s: %v", id, err)
		}
	}
	err := e.call(func(ctx context.Context, s api.AgentService) error {
		_, err := s.ContainerState(ctx, &api.ContainerRequest{Id: id})
		return err
	})
	if !errdefs.IsNotFound(err) {
		t.Errorf("state after remove: %v, want NotFound", err)
	}
	for _, p := range []string{filepath.Join(e.state, id), filepath.Join(e.rt.cfg.BundleDir, id)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after remove (%v)", p, err)
		}
	}
	if cg, err := cgroup.New(); err == nil {
		if _, err := cg.Stats(e.cgroup + "/" + id); !errdefs.IsNotFound(err) {
			t.Errorf("cgroup of %s left after remove (%v)", id, err)
		}
	}
}

// openFds counts the test process's open files.
func openFds(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

func (e *hostEnv) testCreateFails(t *testing.T) {
	const id = "broken"
	before := openFds(t)
	for _, tty := range []bool{false, true} {
		spec := e.spec(t, id, []string{"true"}, func(s *specs.Spec) { s.Root.Path = "/nonexistent/rootfs" })
		err := e.call(func(ctx context.Context, s api.AgentService) error {
			_, err := s.CreateContainer(ctx, &api.CreateContainerRequest{Id: id, Spec: spec, Stdin: true, Tty: tty})
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "crun create") {
			t.Fatalf("create with a missing rootfs (tty %v): %v, want crun's error", tty, err)
		}
		t.Logf("tty %v: %v", tty, err)
		e.checkGone(t, id)
	}
	time.Sleep(100 * time.Millisecond) // the runtime's fds close as crun is reaped
	if after := openFds(t); after > before {
		t.Errorf("%d open files after failed creates, %d before", after, before)
	}
	for _, bad := range []*api.CreateContainerRequest{
		{Id: "../x", Spec: e.spec(t, "x", []string{"true"})},
		{Id: "nospec", Spec: []byte("{")},
		{Id: "relroot", Spec: e.spec(t, "relroot", []string{"true"}, func(s *specs.Spec) { s.Root.Path = "rootfs" })},
	} {
		err := e.call(func(ctx context.Context, s api.AgentService) error {
			_, err := s.CreateContainer(ctx, bad)
			return err
		})
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("create %q: %v, want InvalidArgument", bad.Id, err)
		}
	}
	// The id is free again.
	e.create(t, &api.CreateContainerRequest{Id: id, Spec: e.spec(t, id, []string{"true"})})
	e.removeAndCheck(t, id)
}

// checkGone checks that nothing of id is left.
func (e *hostEnv) checkGone(t *testing.T, id string) {
	t.Helper()
	if _, err := e.rt.get(id); !errdefs.IsNotFound(err) {
		t.Errorf("%s still known: %v", id, err)
	}
	for _, p := range []string{filepath.Join(e.state, id), filepath.Join(e.rt.cfg.BundleDir, id)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left (%v)", p, err)
		}
	}
	if left, _ := os.ReadDir(e.rt.cfg.TempDir); len(left) > 0 {
		t.Errorf("console sockets left: %v", left)
	}
}

func (e *hostEnv) testRemoveCreated(t *testing.T) {
	const id = "never-started"
	resp := e.create(t, &api.CreateContainerRequest{Id: id, Spec: e.spec(t, id, []string{"sleep", "100"})})
	e.removeAndCheck(t, id)
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(int(resp.Pid)) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	testutil.AssertNoProcess(t, int(resp.Pid))
}

// processAlive reports whether pid runs (a zombie does not).
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b))
	return len(fields) > 2 && fields[2] != "Z"
}

// stats reads the stats of id.
func (e *hostEnv) stats(t *testing.T, id string) (*api.StatsResponse, cgroup.Stats) {
	t.Helper()
	var resp *api.StatsResponse
	if err := e.call(func(ctx context.Context, s api.AgentService) (err error) {
		resp, err = s.Stats(ctx, &api.StatsRequest{Ids: []string{id}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var st cgroup.Stats
	if len(resp.Containers) != 1 || json.Unmarshal(resp.Containers[0].Cgroup, &st) != nil {
		t.Fatalf("stats = %v", resp)
	}
	return resp, st
}
