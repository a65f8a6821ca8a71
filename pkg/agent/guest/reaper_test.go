package guest

import (
	"log/slog"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// exitedWith is a wait status of a process that exited with code.
func exitedWith(code int) unix.WaitStatus { return unix.WaitStatus(code << 8) }

func TestReaperBookkeeping(t *testing.T) {
	t0 := time.Now()
	tests := []struct {
		name string
		run  func(r *Reaper) <-chan Exit
		want int // exit code received; -1: none
	}{
		{"watched, then exits", func(r *Reaper) <-chan Exit {
			ch := r.Watch(10, t0)
			r.dispatch(Exit{Pid: 10, Status: exitedWith(3), At: t0.Add(time.Second)})
			return ch
		}, 3},
		{"exits before it is watched", func(r *Reaper) <-chan Exit {
			r.dispatch(Exit{Pid: 11, Status: exitedWith(4), At: t0.Add(time.Second)})
			return r.Watch(11, t0)
		}, 4},
		{"a kept status older than the process is another's", func(r *Reaper) <-chan Exit {
			r.dispatch(Exit{Pid: 12, Status: exitedWith(5), At: t0.Add(-time.Second)})
			return r.Watch(12, t0)
		}, -1},
		{"the stale status is dropped, the new exit arrives", func(r *Reaper) <-chan Exit {
			r.dispatch(Exit{Pid: 13, Status: exitedWith(5), At: t0.Add(-time.Second)})
			ch := r.Watch(13, t0)
			r.dispatch(Exit{Pid: 13, Status: exitedWith(6), At: t0.Add(time.Second)})
			return ch
		}, 6},
		{"another pid's exit is not delivered", func(r *Reaper) <-chan Exit {
			ch := r.Watch(14, t0)
			r.dispatch(Exit{Pid: 15, Status: exitedWith(1), At: t0.Add(time.Second)})
			return ch
		}, -1},
		{"an old kept status is forgotten", func(r *Reaper) <-chan Exit {
			r.dispatch(Exit{Pid: 16, Status: exitedWith(7), At: t0})
			r.dispatch(Exit{Pid: 17, Status: exitedWith(0), At: t0.Add(keepExited + time.Second)})
			return r.Watch(16, t0)
		}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReaper(slog.New(slog.DiscardHandler))
			ch := tt.run(r)
			select {
			case e := <-ch:
				if int(e.Code()) != tt.want {
					t.Errorf("exit code %d, want %d", e.Code(), tt.want)
				}
			default:
				if tt.want != -1 {
					t.Errorf("no exit, want code %d", tt.want)
				}
			}
		})
	}
}

func TestReaperKeepsBounded(t *testing.T) {
	r := newReaper(slog.New(slog.DiscardHandler))
	t0 := time.Now()
	for i := range maxKeptExited + 10 {
		r.dispatch(Exit{Pid: 1000 + i, Status: exitedWith(0), At: t0.Add(time.Duration(i) * time.Millisecond)})
	}
	if n := len(r.kept); n > maxKeptExited {
		t.Errorf("%d statuses kept, want at most %d", n, maxKeptExited)
	}
	if _, ok := r.kept[1000]; ok {
		t.Error("the oldest status is still kept")
	}
	if _, ok := r.kept[1000+maxKeptExited+9]; !ok {
		t.Error("the newest status was dropped")
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		status unix.WaitStatus
		code   int32
		killed bool
	}{
		{exitedWith(0), 0, false},
		{exitedWith(42), 42, false},
		{unix.WaitStatus(unix.SIGKILL), 137, true},
		{unix.WaitStatus(unix.SIGTERM), 143, false},
	}
	for _, tt := range tests {
		e := Exit{Status: tt.status}
		if e.Code() != tt.code || e.Killed(unix.SIGKILL) != tt.killed {
			t.Errorf("status %#x: code %d killed %v, want %d %v", tt.status, e.Code(), e.Killed(unix.SIGKILL), tt.code, tt.killed)
		}
	}
}
