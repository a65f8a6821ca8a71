package guest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The agent is PID 1 of the guest (a child subreaper when it is not, as in
// tests): every orphan of the guest is reparented to it, container inits
// among them once `crun create` has exited. One Reaper reaps them all with
// wait4(-1): nothing else in the agent may wait for a child (exec.Cmd.Wait
// would race it), so every process the agent starts goes through Start.
//
// A status may arrive before anyone asked for it (a process that exits
// before Start returns, a container init that dies before its pid file is
// read): statuses of pids nobody watches are kept for keepExited, so a
// later Watch finds them. Watch's since argument tells a kept status of an
// earlier process that had the same pid from the one asked for.

// Exit is how a process ended.
type Exit struct {
	Pid    int
	Status unix.WaitStatus
	At     time.Time // when it was reaped
}

// Code is the exit code as a shell reports it: the status of a process that
// exited, 128+signal of one a signal killed.
func (e Exit) Code() int32 {
	if e.Status.Signaled() {
		return 128 + int32(e.Status.Signal())
	}
	return int32(e.Status.ExitStatus())
}

// Killed reports whether sig ended the process.
func (e Exit) Killed(sig unix.Signal) bool {
	return e.Status.Signaled() && e.Status.Signal() == sig
}

// Bounds of the statuses of pids nobody watches (orphans of the guest).
const (
	keepExited    = time.Minute
	maxKeptExited = 4096
)

// Reaper reaps every child of the process and hands exits to watchers.
type Reaper struct {
	log *slog.Logger

	mu       sync.Mutex
	watchers map[int][]chan Exit
	kept     map[int]Exit
}

// NewReaper makes the reaper; when the process is not PID 1 it becomes a
// child subreaper, so orphaned descendants (container inits) are its own.
// Run must be running for exits to be seen.
func NewReaper(log *slog.Logger) (*Reaper, error) {
	if os.Getpid() != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return nil, fmt.Errorf("become a child subreaper: %w", err)
		}
	}
	return newReaper(log), nil
}

func newReaper(log *slog.Logger) *Reaper {
	return &Reaper{log: log, watchers: map[int][]chan Exit{}, kept: map[int]Exit{}}
}

// Run reaps on every SIGCHLD until ctx ends.
func (r *Reaper) Run(ctx context.Context) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGCHLD)
	defer signal.Stop(sigs)
	for {
		r.reapAll()
		select {
		case <-ctx.Done():
			return
		case <-sigs:
		}
	}
}

// reapAll collects every child that has exited (signals coalesce: one
// SIGCHLD may stand for many exits).
func (r *Reaper) reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return // ECHILD: no children; 0: none exited yet
		}
		if ws.Stopped() || ws.Continued() {
			continue
		}
		r.dispatch(Exit{Pid: pid, Status: ws, At: time.Now()})
	}
}

// dispatch hands e to the watchers of its pid, or keeps it for a later
// Watch. It forgets kept statuses older than keepExited, and the oldest
// beyond maxKeptExited.
func (r *Reaper) dispatch(e Exit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ws, ok := r.watchers[e.Pid]; ok {
		delete(r.watchers, e.Pid)
		for _, w := range ws {
			w <- e
		}
		return
	}
	r.kept[e.Pid] = e
	r.pruneLocked(e.At)
}

func (r *Reaper) pruneLocked(now time.Time) {
	var oldest Exit
	for pid, k := range r.kept {
		if now.Sub(k.At) > keepExited {
			delete(r.kept, pid)
			r.log.Debug("forgot the exit of an unwatched process", "pid", pid, "status", k.Status)
			continue
		}
		if oldest.Pid == 0 || k.At.Before(oldest.At) {
			oldest = k
		}
	}
	if len(r.kept) > maxKeptExited {
		delete(r.kept, oldest.Pid)
	}
}

// Watch returns a channel that receives pid's exit once. since is a time
// before the process was made: a kept status reaped before it was another
// process's that had the same pid, and is dropped.
func (r *Reaper) Watch(pid int, since time.Time) <-chan Exit {
	ch := make(chan Exit, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if k, ok := r.kept[pid]; ok {
		delete(r.kept, pid)
		if !k.At.Before(since) {
			ch <- k
			return ch
		}
	}
	r.watchers[pid] = append(r.watchers[pid], ch)
	return ch
}

// Proc is a child process the reaper started.
type Proc struct {
	Pid  int
	Exit <-chan Exit
}

// Start starts argv[0] (an absolute path) with files as its fds 0, 1, 2,
// ... (nil: /dev/null for 0-2) and watches it. Nothing may Wait for it but
// the reaper.
func (r *Reaper) Start(argv []string, files []*os.File) (*Proc, error) {
	fds, closeNull, err := childFds(files)
	if err != nil {
		return nil, err
	}
	defer closeNull()
	since := time.Now()
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: fds,
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	runtime.KeepAlive(files) // their fds must stay open until the child has them
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	return &Proc{Pid: pid, Exit: r.Watch(pid, since)}, nil
}

// childFds lists the fds of files for ForkExec, /dev/null for the missing
// ones of 0-2; closeNull closes what it opened.
func childFds(files []*os.File) (fds []uintptr, closeNull func(), err error) {
	var null *os.File
	closeNull = func() {
		if null != nil {
			null.Close()
		}
	}
	for i := range max(3, len(files)) {
		var f *os.File
		if i < len(files) {
			f = files[i]
		}
		if f == nil {
			if null == nil {
				if null, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
					return nil, closeNull, err
				}
			}
			f = null
		}
		fds = append(fds, f.Fd())
	}
	return fds, closeNull, nil
}
