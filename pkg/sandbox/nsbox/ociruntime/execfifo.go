package ociruntime

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

// Starting a container without `runtime start`.
//
// A created container's init waits on <root>/<id>/exec.fifo until the
// runtime's start releases it, and that is all `runc start` and `crun start`
// do (their state is derived: a FIFO means created). Each costs a runtime
// process start, about 25 ms for runc and 12 ms for crun here. startByFifo
// does the same from the daemon, for containers whose spec has no
// poststart hooks (the runtimes run those in `start`):
//   - runc's init opens the FIFO for writing and blocks until a reader
//     takes its byte; start reads the byte and removes the FIFO.
//   - crun's init holds the FIFO open for reading (crun create opened it)
//     and blocks until a writer gives it a byte; start writes one and removes
//     the FIFO (crun removes it first; here the byte goes first, so a start
//     that crashed between the two is recognised: nobody reads any more).

// errNoFifo: the container has no exec FIFO (started already, stopped, or a
// runtime that keeps none): `runtime start` decides and says why.
var errNoFifo = errors.New("no exec fifo")

// fifoPollInterval is how often startByFifo checks on init while it waits
// for init's byte.
const fifoPollInterval = 50 * time.Millisecond

func (r *Runtime) execFifo(id string) string { return filepath.Join(r.root, id, "exec.fifo") }

// startByFifo releases the created container's init. It returns errNoFifo
// when there is no FIFO to release it by.
func (r *Runtime) startByFifo(ctx context.Context, id string) error {
	path := r.execFifo(id)
	pid, err := readPid(r.pidFile(id))
	if err != nil {
		if errdefs.IsNotFound(err) {
			return errNoFifo
		}
		return err
	}
	if r.crun {
		return r.releaseByWrite(ctx, id, pid, path)
	}
	return r.releaseByRead(ctx, id, pid, path)
}

// releaseByRead takes the byte runc's init writes to the FIFO at path.
func (r *Runtime) releaseByRead(ctx context.Context, id string, pid int, path string) error {
	// O_RDWR: the open never waits for init, and a FIFO opened so is
	// pollable, so the read below can give up on an init that died.
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return errNoFifo
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Mode().Type() != os.ModeNamedPipe {
		return fmt.Errorf("%s is not a FIFO: %w", path, errdefs.ErrDataLoss)
	}
	buf := make([]byte, 1)
	for {
		if err := f.SetReadDeadline(time.Now().Add(fifoPollInterval)); err != nil {
			return err
		}
		n, err := f.Read(buf)
		if n == 1 {
			return removeFifo(path)
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("start %s: %w", id, ctx.Err())
		}
		switch initState(pid, path) {
		case initDead:
			// It may have written its byte, run and exited between two
			// polls: a byte in the FIFO means it was started.
			if err := f.SetReadDeadline(time.Now().Add(time.Millisecond)); err == nil {
				if n, _ := f.Read(buf); n == 1 {
					return removeFifo(path)
				}
			}
			return fmt.Errorf("start %s: the container's process is already dead: %w", id, errdefs.ErrFailedPrecondition)
		case initReleased:
			// init no longer holds the FIFO: it took its byte from an
			// earlier start that ended (a crash) before removing the FIFO.
			r.log.WarnContext(ctx, "container was released by an interrupted start; removing its exec fifo", "id", id, "pid", pid)
			return removeFifo(path)
		}
	}
}

// releaseByWrite gives crun's init, which reads the FIFO at path, its byte.
func (r *Runtime) releaseByWrite(ctx context.Context, id string, pid int, path string) error {
	// O_NONBLOCK: the open fails (ENXIO) instead of waiting when nobody
	// reads the FIFO.
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return errNoFifo
	case errors.Is(err, unix.ENXIO):
		if initState(pid, path) == initDead {
			return fmt.Errorf("start %s: the container's process is already dead: %w", id, errdefs.ErrFailedPrecondition)
		}
		// init is alive and reads no more: it took its byte from an
		// earlier start that ended (a crash) before removing the FIFO.
		r.log.WarnContext(ctx, "container was released by an interrupted start; removing its exec fifo", "id", id, "pid", pid)
		return removeFifo(path)
	case err != nil:
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Mode().Type() != os.ModeNamedPipe {
		return fmt.Errorf("%s is not a FIFO: %w", path, errdefs.ErrDataLoss)
	}
	if _, err := f.Write([]byte{0}); err != nil {
		if errors.Is(err, unix.EPIPE) {
			return fmt.Errorf("start %s: the container's process is already dead: %w", id, errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	return removeFifo(path)
}

func removeFifo(path string) error {
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
// init holds an O_PATH descriptor of the FIFO from its start until just
// before it execs the container's process.
func initState(pid int, path string) initStatus {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return initDead
	}
	if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
		return initDead
	}
	fdDir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return initDead
	}
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(fdDir, e.Name())); err == nil && target == path {
			return initWaiting
		}
	}
	return initReleased
}

// hasPoststartHooks reports whether the bundle's spec names poststart hooks
// (which crun and newer runc run in `start`). An unreadable spec counts as
// having them: `runc start` then decides.
func hasPoststartHooks(bundle string) bool {
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
