package sandbox

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestProcessStartAndAlive(t *testing.T) {
	start, err := ProcessStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !ProcessAlive(os.Getpid(), start) {
		t.Fatal("this process is not alive")
	}
	if ProcessAlive(os.Getpid(), start+1) {
		t.Fatal("a different start time names the same process")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no true:", err)
	}
	if ProcessAlive(cmd.Process.Pid, 0) {
		t.Fatal("an exited process is alive")
	}
	if ProcessAlive(0, 0) {
		t.Fatal("pid 0 is alive")
	}
}

// A child given a socket and a file is counted as one process of one
// thread holding two more descriptors than a child given none, one of
// them a socket (the test binary may pass on descriptors it inherited).
func TestCountProcesses(t *testing.T) {
	// Descriptors this test inherited without close-on-exec (make's
	// jobserver pipe, say) would reach the child and skew its count.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sock, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	file, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	sleep := testutil.RequireBinary(t, "sleep")
	count := func(extra ...*os.File) ProcessCounts {
		cmd := exec.Command(sleep, "100")
		cmd.ExtraFiles = extra
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		// Count once sleep sits in its nanosleep: the dynamic loader has
		// opened and closed its files by then. A pid that names no process
		// is left out.
		waitNanosleep(t, cmd.Process.Pid)
		return countProcesses([]int{cmd.Process.Pid, 1 << 30})
	}
	base, got := count(), count(sock, file)
	want := ProcessCounts{Processes: 1, Threads: 1, FileDescriptors: base.FileDescriptors + 2, Sockets: base.Sockets + 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// waitNanosleep waits until pid is blocked in nanosleep(2) or
// clock_nanosleep(2) (syscall numbers 35 and 230 on x86-64, 101 and 115 on arm64).
func waitNanosleep(t *testing.T, pid int) {
	t.Helper()
	for range 500 {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/syscall")
		if f := strings.Fields(string(b)); len(f) > 0 && (f[0] == "35" || f[0] == "230" || f[0] == "101" || f[0] == "115") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d never reached nanosleep", pid)
}

// withDescendants finds a child a process forked (virtiofsd forks its
// sandboxed worker after it starts: moving the parent alone into the
// pod's cgroup left the worker in the daemon's).
func TestWithDescendants(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 1000 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var got []int
	var b []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = withDescendants(cmd.Process.Pid); len(got) == 2 {
			if b, _ = os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", got[1])); strings.HasPrefix(string(b), "sleep") {
				break // the child has exec'd
			}
		}
	}
	if len(got) != 2 || got[0] != cmd.Process.Pid || !strings.HasPrefix(string(b), "sleep") {
		t.Fatalf("descendants of %d = %v (child %q), want it and its sleep", cmd.Process.Pid, got, b)
	}
	for _, p := range got {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
}
