package nsbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"golang.org/x/sys/unix"
)

// infraStopTimeout bounds how long stopping the infra process waits for it
// to be gone.
const infraStopTimeout = 10 * time.Second

// startInfra starts the pod's infra process: PID 1 of a new PID namespace
// that the pod's containers join (a pod that shares its process
// namespace). It is the tiny static program of PauseProgram where cradle
// has one for the architecture (a page of memory), else cradle's own binary
// (`cradle pause`); both only reap the orphans the namespace hands them.
// It runs in a session of its own, so it outlives the daemon; a restarted
// daemon knows it by pid and start time.
func (b *Backend) startInfra(pod *sandbox.Pod) error {
	if len(b.pause) == 0 {
		return fmt.Errorf("no infra command configured for a shared PID namespace")
	}
	cmd := exec.Command(b.pause[0], b.pause[1:]...)
	// The pod's ID in its environment names it until its pid is recorded
	// (findInfra).
	cmd.Env = []string{"GOMAXPROCS=1", "GOGC=off", infraEnv + pod.ID}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWPID, Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the pod's infra process: %w", err)
	}
	// Reap it when it ends while this daemon is its parent.
	go func() { _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	start, err := sandbox.ProcessStart(pid)
	if err != nil {
		_ = cmd.Process.Kill()
		return fmt.Errorf("the pod's infra process: %w", err)
	}
	pod.Pid, pod.PidStart = pid, start
	pod.NS["pid"] = fmt.Sprintf("/proc/%d/ns/pid", pid)
	return nil
}

// infraEnv prefixes the pod's ID in the infra process's environment.
const infraEnv = "CRADLE_POD="

// findInfra finds the infra process of a pod whose pid was never recorded
// (a crash between its start and the checkpoint) by the pod's ID in its
// environment; 0 when there is none.
func findInfra(podID string) (pid int, start uint64) {
	want := []byte(infraEnv + podID + "\x00")
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		n, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + p.Name() + "/environ")
		if err != nil || !bytes.Contains(env, want) {
			continue
		}
		if st, err := sandbox.ProcessStart(n); err == nil {
			return n, st
		}
	}
	return 0, 0
}

// stopInfra kills the pod's infra process, if it still runs, and waits
// until it is gone; with it go every process of its PID namespace.
func stopInfra(ctx context.Context, pod *sandbox.Pod) error {
	if pod.Pid == 0 && pod.Config.PID == ctrconfig.NamespacePod {
		p := *pod
		p.Pid, p.PidStart = findInfra(pod.ID)
		pod = &p
	}
	if pod.Pid == 0 || !sandbox.ProcessAlive(pod.Pid, pod.PidStart) {
		return nil
	}
	if err := unix.Kill(pod.Pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill the pod's infra process %d: %w", pod.Pid, err)
	}
	ctx, cancel := context.WithTimeout(ctx, infraStopTimeout)
	defer cancel()
	for sandbox.ProcessAlive(pod.Pid, pod.PidStart) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the pod's infra process %d did not end: %w", pod.Pid, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// Pause is `cradle pause`, the infra process: it reaps the children the
// PID namespace hands it until ctx ends (SIGTERM or SIGINT).
func Pause(ctx context.Context) error {
	if os.Getpid() != 1 {
		return errors.New("pause runs as PID 1 of a pod's PID namespace")
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sigs:
			for {
				var ws unix.WaitStatus
				pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
