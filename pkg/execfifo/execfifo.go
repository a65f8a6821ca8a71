// Package execfifo starts a created OCI container without `runtime start`.
//
// A created container's init waits on the exec FIFO in the runtime's state
// directory (<root>/<id>/exec.fifo) until the runtime's start releases it,
// and that is all `runc start` and `crun start` do (their state is derived:
// a FIFO means created). Each costs a runtime process start: about 25 ms
// for runc and 12 ms for crun on the development host, hundreds of
// milliseconds for crun in a microVM under TCG. The two runtimes wait the
// opposite ways:
//   - runc's init opens the FIFO for writing and blocks until a reader
//     takes its byte; ByRead reads the byte and removes the FIFO.
//   - crun's init holds the FIFO open for reading (crun create opened it)
//     and blocks until a writer gives it a byte; ByWrite writes one and
//     removes the FIFO (crun removes it first; here the byte goes first, so
//     a start that crashed between the two is recognised: nobody reads any
//     more).
//
// The runtimes run poststart hooks in `start`: a spec with them
// (HasPoststartHooks) is started by the runtime.
package execfifo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ErrNoFifo is a container without an exec FIFO (started already, stopped,
// or a runtime that keeps none): `runtime start` decides and says why.
var ErrNoFifo = errors.New("no exec fifo")

// errDead is init gone before it was released.
var errDead = fmt.Errorf("the container's process is already dead: %w", errdefs.ErrFailedPrecondition)

// pollInterval is how often ByRead checks on init while it waits for init's
// byte.
const pollInterval = 50 * time.Millisecond

// Path is the exec FIFO of container id under the runtime's root.
func Path(root, id string) string { return filepath.Join(root, id, "exec.fifo") }

// Outcome is how a container was released.
type Outcome int

const (
	// Released is init released by this call.
	Released Outcome = iota
	// AlreadyReleased is init released by an earlier start that ended (a
	// crash) before it removed the FIFO; the FIFO is removed now.
	AlreadyReleased
)

// ByRead releases runc's init at pid, waiting on the FIFO at path: it takes
// the byte init writes, calls released (if not nil) and removes the FIFO.
// An init that dies while it waits is ErrFailedPrecondition.
func ByRead(ctx context.Context, path string, pid int, released func()) (Outcome, error) {
	// O_RDWR: the open never waits for init, and a FIFO opened so is
	// pollable, so the read below can give up on an init that died.
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, ErrNoFifo
	}
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if err := checkFifo(f, path); err != nil {
		return 0, err
	}
	buf := make([]byte, 1)
	for {
		if err := f.SetReadDeadline(time.Now().Add(pollInterval)); err != nil {
			return 0, err
		}
		n, err := f.Read(buf)
		if n == 1 {
			return releasedBy(path, released)
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, fmt.Errorf("read %s: %w", path, err)
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		switch initState(pid, path) {
		case initDead:
			// It may have written its byte, run and exited between two
			// polls: a byte in the FIFO means it was started.
			if err := f.SetReadDeadline(time.Now().Add(time.Millisecond)); err == nil {
				if n, _ := f.Read(buf); n == 1 {
					return releasedBy(path, released)
				}
			}
			return 0, errDead
		case initReleased:
			// init no longer holds the FIFO: it took its byte from an
			// earlier start.
			return AlreadyReleased, remove(path)
		}
	}
}

// ByWrite releases crun's init at pid, which reads the FIFO at path: it
// writes init's byte, calls released (if not nil) and removes the FIFO. It
// never waits.
func ByWrite(path string, pid int, released func()) (Outcome, error) {
	// O_NONBLOCK: the open fails (ENXIO) instead of waiting when nobody
	// reads the FIFO.
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return 0, ErrNoFifo
	case errors.Is(err, unix.ENXIO):
		if initState(pid, path) == initDead {
			return 0, errDead
		}
		// init is alive and reads no more: it took its byte from an
		// earlier start.
		return AlreadyReleased, remove(path)
	case err != nil:
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if err := checkFifo(f, path); err != nil {
		return 0, err
	}
	if _, err := f.Write([]byte{0}); err != nil {
		if errors.Is(err, unix.EPIPE) {
			return 0, errDead
		}
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	return releasedBy(path, released)
}

// releasedBy ends a start that has released init: released is the crash
// tests' point between the release and the FIFO's removal (a daemon
// killed there leaves a running container that its runtime calls created;
// FinishInterrupted corrects that).
func releasedBy(path string, released func()) (Outcome, error) {
	if released != nil {
		released()
	}
	return Released, remove(path)
}

// FinishInterrupted completes a start that released the init at pid and
// ended (a crash) before it removed the FIFO at path: the runtime, which
// derives "created" from the FIFO, says created while init runs the
// container's process. It reports whether that was so, and then removes
// the FIFO as the start would have. An init that still waits, or a FIFO
// already gone, is left as it is.
func FinishInterrupted(path string, pid int) (bool, error) {
	if _, err := os.Lstat(path); err != nil {
		return false, nil //nolint:nilerr // no FIFO: nothing was interrupted
	}
	if initState(pid, path) != initReleased {
		return false, nil
	}
	return true, remove(path)
}

func checkFifo(f *os.File, path string) error {
	if fi, err := f.Stat(); err != nil || fi.Mode().Type() != os.ModeNamedPipe {
		return fmt.Errorf("%s is not a FIFO: %w", path, errdefs.ErrDataLoss)
	}
	return nil
}

func remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

type initStatus int

const (
	initWaiting  initStatus = iota // alive, holding the FIFO
	initDead                       // gone or a zombie
	initReleased                   // alive, no longer holding the FIFO: it has exec'd the container's process
)

// initState tells whether the init at pid still waits on the FIFO at path.
// init holds a descriptor of the FIFO from its start until just before it
// execs the container's process.
func initState(pid int, path string) initStatus {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return initDead
	}
	if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
		return initDead
	}
	fifo, err := os.Lstat(path)
	if err != nil {
		// Removed: whoever removed it released init or saw it released.
		return initReleased
	}
	fdDir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return initDead
	}
	// By inode, not by the link's text: a state root reached through a
	// symbolic link, or seen from init's mount namespace, names the FIFO
	// differently.
	for _, e := range ents {
		if fi, err := os.Stat(filepath.Join(fdDir, e.Name())); err == nil && os.SameFile(fi, fifo) {
			return initWaiting
		}
	}
	return initReleased
}

// HasPoststartHooks reports whether the bundle's spec names poststart hooks
// (which crun and newer runc run in `start`). An unreadable spec counts as
// having them: `runtime start` then decides.
func HasPoststartHooks(bundle string) bool {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return true
	}
	var s struct {
		Hooks *struct {
			Poststart []json.RawMessage `json:"poststart"`
		} `json:"hooks"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return true
	}
	return s.Hooks != nil && len(s.Hooks.Poststart) > 0
}
