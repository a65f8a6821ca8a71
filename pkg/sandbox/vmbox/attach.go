package vmbox

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/cradle-runtime/cradle/pkg/agent/client"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"golang.org/x/sys/unix"
)

// Attach returns the VM of spec whose QEMU is pid, started at start (clock
// ticks since boot, /proc/<pid>/stat): a VM that an earlier daemon started,
// for Stop. QEMU is held by a pidfd, so a recycled pid is never signalled.
// A QEMU that is gone gives a VM that has already exited (Stop then only
// removes its files). pid 0 means unknown: QEMU's pid file is read, and
// the process is taken only if its command line names spec's agent socket.
func Attach(spec VMSpec, pid int, start uint64, log *slog.Logger) (*VM, error) {
	agent, err := client.New(spec.AgentSocket())
	if err != nil {
		return nil, err
	}
	v := &VM{spec: spec, pid: pid, exited: make(chan struct{}), log: log, agent: agent}
	if pid == 0 {
		pid, start = fromPIDFile(spec)
		v.pid = pid
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if pid <= 0 || err != nil || !sandbox.ProcessAlive(pid, start) {
		if err == nil {
			_ = unix.Close(fd)
		}
		v.kill = func() error { return nil }
		close(v.exited)
		return v, nil
	}
	p := &pidfd{fd: fd}
	v.kill = p.kill
	go func() {
		p.wait()
		close(v.exited)
	}()
	return v, nil
}

// fromPIDFile reads the pid QEMU wrote for spec and its start time; 0 when
// there is none, or it is not spec's QEMU.
func fromPIDFile(spec VMSpec) (int, uint64) {
	b, err := os.ReadFile(spec.PIDFile())
	if err != nil {
		return 0, 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, 0
	}
	start, err := sandbox.ProcessStart(pid)
	if err != nil {
		return 0, 0
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !bytes.Contains(cmdline, []byte("path="+spec.AgentSocket()+",")) {
		return 0, 0
	}
	// Read again: the pid could have been recycled between the reads.
	if again, err := sandbox.ProcessStart(pid); err != nil || again != start {
		return 0, 0
	}
	return pid, start
}

// pidfd is a process that is not our child, held by a pidfd.
type pidfd struct {
	mu     sync.Mutex
	fd     int
	closed bool
}

// wait blocks until the process exits, then closes the pidfd.
func (p *pidfd) wait() {
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err == nil || !errors.Is(err, unix.EINTR) {
			break
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	_ = unix.Close(p.fd)
}

func (p *pidfd) kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	if err := unix.PidfdSendSignal(p.fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill qemu: %w", err)
	}
	return nil
}
