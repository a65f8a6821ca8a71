package guest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Reaper is the one place the agent waits for children: as PID 1 (or a
// child subreaper) it inherits every orphan, container inits included, and
// must reap them all, so no other code may wait (exec.Cmd.Wait would race
// it). A status that arrives before anyone asks for it is kept for a while.
type Reaper struct {
	mu      sync.Mutex
	waiters map[int][]chan unix.WaitStatus
	early   map[int]earlyExit
}

type earlyExit struct {
	status unix.WaitStatus
	at     time.Time
}

// earlyKeep is how long an unclaimed exit status is kept: long enough for
// any start-then-register of ours, short enough that orphans do not pile up.
const earlyKeep = 5 * time.Minute

// NewReaper makes a reaper; Run must be running for it to reap.
func NewReaper() *Reaper {
	return &Reaper{waiters: map[int][]chan unix.WaitStatus{}, early: map[int]earlyExit{}}
}

// Run reaps on every SIGCHLD until ctx ends. When this process is not PID
// 1 it makes itself a child subreaper, so that container inits whose
// runtime exited are reparented to it.
func (r *Reaper) Run(ctx context.Context) {
	if os.Getpid() != 1 {
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	}
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, unix.SIGCHLD)
	defer signal.Stop(ch)
	tick := time.NewTicker(time.Second) // a coalesced SIGCHLD is never lost for long
	defer tick.Stop()
	for {
		r.reap()
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-tick.C:
		}
	}
}

func (r *Reaper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		r.deliver(pid, ws)
	}
}

func (r *Reaper) deliver(pid int, ws unix.WaitStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if chs := r.waiters[pid]; len(chs) > 0 {
		delete(r.waiters, pid)
		for _, ch := range chs {
			ch <- ws
		}
		return
	}
	now := time.Now()
	for p, e := range r.early {
		if now.Sub(e.at) > earlyKeep {
			delete(r.early, p)
		}
	}
	r.early[pid] = earlyExit{status: ws, at: now}
}

// Wait returns a channel that receives pid's exit status once.
func (r *Reaper) Wait(pid int) <-chan unix.WaitStatus {
	ch := make(chan unix.WaitStatus, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.early[pid]; ok {
		delete(r.early, pid)
		ch <- e.status
		return ch
	}
	r.waiters[pid] = append(r.waiters[pid], ch)
	return ch
}

// Start starts cmd (its stdio must be *os.File or nil: no copying
// goroutines that Wait would collect) and returns its exit status channel.
// The caller never calls cmd.Wait.
func (r *Reaper) Start(cmd *exec.Cmd) (<-chan unix.WaitStatus, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	return r.Wait(pid), nil
}

// RunCmd runs cmd to its end; a status other than a zero exit is an error
// that quotes out() (what it wrote, if captured).
func (r *Reaper) RunCmd(ctx context.Context, cmd *exec.Cmd, out func() string) error {
	ch, err := r.Start(cmd)
	if err != nil {
		return err
	}
	select {
	case ws := <-ch:
		if ws.Exited() && ws.ExitStatus() == 0 {
			return nil
		}
		return fmt.Errorf("%s %v: %s: %s", cmd.Path, cmd.Args[1:], describe(ws), out())
	case <-ctx.Done():
		_ = unix.Kill(cmd.Process.Pid, unix.SIGKILL)
		<-ch
		return ctx.Err()
	}
}

func describe(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return fmt.Sprintf("exit status %d", ws.ExitStatus())
}

// exitCode is the shell's view of a status: the code, or 128+signal.
func exitCode(ws unix.WaitStatus) int32 {
	if ws.Signaled() {
		return 128 + int32(ws.Signal())
	}
	return int32(ws.ExitStatus())
}
