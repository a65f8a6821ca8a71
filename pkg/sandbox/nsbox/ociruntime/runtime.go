// Package ociruntime drives an OCI runtime binary (runc or crun) for
// namespace pods, with conmon as each container's monitor (CRI-O's design).
// conmon owns the container's stdio, writes its log in the CRI format and
// records its exit status in a file, so a daemon that dies or restarts stops
// no container and loses no output or exit code: every fact this package
// needs lives in files, and a new Runtime value over the same directories
// sees the containers an earlier process made.
//
// API:
//
//	New(Config) (*Runtime, error)
//	Create(ctx, CreateOptions) (pid, error)   conmon + `runtime create` (or `runtime restore` from CRIU images)
//	Checkpoint(ctx, id, imageDir, workDir)    `runtime checkpoint --leave-running` (CRIU)
//	Start(ctx, id)                            runc's exec FIFO (execfifo.go), else `runtime start`
//	Kill(ctx, id, sig, all)                   `runtime kill [--all]`
//	Delete(ctx, id, force)                    `runtime delete`, waits for conmon, removes state; idempotent
//	Status(ctx, id) (Status, error)           `runtime state` + conmon's exit file
//	Wait(ctx, id) (Status, error)             blocks until the exit file appears (inotify)
//	Exec(ctx, id, ExecOptions) (code, error)  `runtime exec --process FILE`, streams, optional pty, bounded time
//	Attach(ctx, id, AttachOptions)            conmon's attach socket; resize through its ctl fifo
//	ReopenLog(ctx, id)                        conmon's ctl fifo: reopen the log file (log rotation)
//	MonitorPid(id) (int, error)               conmon's pid
//
// Files. Root is the runtime's own state (--root). StateDir/<id>/ holds
// conmon's pidfile (conmon.pid), the container's pidfile (pid), the exit
// directory (exit/<id>, conmon writes the exit code there), conmon's own
// log (conmon.log) and meta.json (the bundle path). Attach sockets live under
// StateDir/attach/<id> (conmon links that to the bundle). conmon also makes
// its fifos ctl and winsz and the attach socket in the bundle directory;
// Delete removes them.
//
// conmon daemonizes: the host's init (or the nearest subreaper) becomes its
// parent and reaps it. Delete waits for it to exit (a zombie counts).
//
// Calls for one container id must not overlap (the engine serializes
// them); calls for different ids may run at once. A Terminal container
// needs process.terminal in its spec and a /dev/pts mount; crun 1.8
// refuses specs whose ociVersion is newer than 1.1 ("unknown version
// specified"), runc 1.1 takes them.
//
// crun on a hybrid cgroup host. crun 1.8 refuses hybrid layouts (v1
// controllers with cgroup2 at /sys/fs/cgroup/unified). For a crun binary
// on such a host every crun and conmon process is started from a locked OS
// thread that has unshared its mount namespace, made it a slave of the
// host's and unmounted /sys/fs/cgroup/unified there (see hybrid.go): crun
// then sees a plain v1 host, which is where the limits live anyway. runc
// is started normally.
package ociruntime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// Config describes one runtime handler.
type Config struct {
	Name     string       // handler name, for logs
	Binary   string       // path of runc or crun
	Conmon   string       // path of conmon
	Root     string       // the runtime's state directory (--root)
	StateDir string       // per-container directories: pidfiles, exit files, sockets
	Log      *slog.Logger // nil discards
	// Failpoint, when set, is called with the name of each step done
	// (the crash tests kill the daemon there).
	Failpoint func(step string)
}

// Runtime drives one OCI runtime binary through conmon. It holds no
// per-container state in memory: everything is in Root and StateDir.
type Runtime struct {
	name, binary, conmon string
	exe                  *sealedExe // runs binary from a sealed copy (crun); nil: from its file
	root, stateDir       string
	crun                 bool // crun, not runc
	hideUnified          bool // start crun in a cgroup v1 view (hybrid.go)
	failpoint            func(step string)
	log                  *slog.Logger
}

// New checks cfg and makes the directories.
func New(cfg Config) (*Runtime, error) {
	for _, p := range []struct{ what, path string }{
		{"runtime binary", cfg.Binary}, {"conmon", cfg.Conmon}, {"root", cfg.Root}, {"state dir", cfg.StateDir},
	} {
		if p.path == "" || !filepath.IsAbs(p.path) {
			return nil, fmt.Errorf("%s path %q must be absolute: %w", p.what, p.path, errdefs.ErrInvalidArgument)
		}
	}
	for _, bin := range []string{cfg.Binary, cfg.Conmon} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s is not executable: %v: %w", bin, err, errdefs.ErrFailedPrecondition)
		}
	}
	for _, d := range []string{cfg.Root, cfg.StateDir, filepath.Join(cfg.StateDir, "attach")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("make %s: %w", d, err)
		}
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name := cfg.Name
	if name == "" {
		name = filepath.Base(cfg.Binary)
	}
	r := &Runtime{
		name: name, binary: cfg.Binary, conmon: cfg.Conmon,
		root: cfg.Root, stateDir: cfg.StateDir, failpoint: cfg.Failpoint, log: log.With("runtime", name),
	}
	if r.failpoint == nil {
		r.failpoint = func(string) {}
	}
	r.crun = isCrun(cfg.Binary)
	if r.crun {
		// runc copies itself only for a container's init, and its
		// copy would hold 10 MiB: no measurable gain (see sealedExe).
		exe, err := newSealedExe(cfg.Binary, filepath.Join(cfg.StateDir, "exe"), r.log)
		if err != nil {
			return nil, err
		}
		r.exe = exe
	}
	if r.crun {
		hybrid, err := hybridHost()
		if err != nil {
			return nil, err
		}
		r.hideUnified = hybrid
	}
	if r.hideUnified {
		if shared, err := rootShared(); err == nil && !shared {
			r.log.Warn("crun runs in a mount namespace of its own on this hybrid cgroup host, and / is not a shared mount: "+
				"each conmon keeps the host's mounts of its start alive until it exits; make / rshared", "hide", unifiedMount)
		}
	}
	return r, nil
}

// isCrun reports whether bin is crun (by name: crun and its versioned
// installs, e.g. crun-1.8).
func isCrun(bin string) bool { return strings.HasPrefix(filepath.Base(bin), "crun") }

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// checkID accepts ids that are safe as one path element and as a runtime
// argument.
func checkID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("container id %q: want [A-Za-z0-9][A-Za-z0-9_.-]{0,127}: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// The per-container paths.
func (r *Runtime) dir(id string) string        { return filepath.Join(r.stateDir, id) }
func (r *Runtime) exitDir(id string) string    { return filepath.Join(r.dir(id), "exit") }
func (r *Runtime) exitFile(id string) string   { return filepath.Join(r.exitDir(id), id) }
func (r *Runtime) pidFile(id string) string    { return filepath.Join(r.dir(id), "pid") }
func (r *Runtime) conmonPid(id string) string  { return filepath.Join(r.dir(id), "conmon.pid") }
func (r *Runtime) conmonLog(id string) string  { return filepath.Join(r.dir(id), "conmon.log") }
func (r *Runtime) metaFile(id string) string   { return filepath.Join(r.dir(id), "meta.json") }
func (r *Runtime) attachLink(id string) string { return filepath.Join(r.stateDir, "attach", id) }

// meta is what Delete and ReopenLog need to know about a container after a
// restart.
type meta struct {
	Bundle  string `json:"bundle"`
	LogPath string `json:"logPath"`
	// FifoStart: Start may release the container through the runtime's
	// exec FIFO (no poststart hooks in its spec, not restored).
	FifoStart bool `json:"fifoStart,omitempty"`
}

func (r *Runtime) readMeta(id string) (meta, error) {
	var m meta
	b, err := os.ReadFile(r.metaFile(id))
	if errors.Is(err, os.ErrNotExist) {
		return m, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("container %s: decode %s: %v: %w", id, r.metaFile(id), err, errdefs.ErrDataLoss)
	}
	return m, nil
}

// MonitorPid returns the pid of the container's conmon.
func (r *Runtime) MonitorPid(id string) (int, error) {
	if err := checkID(id); err != nil {
		return 0, err
	}
	return readPid(r.conmonPid(id))
}

// readPid reads a pidfile; a missing one is ErrNotFound.
func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("pidfile %s: %w", path, errdefs.ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pidfile %s holds %q: %w", path, b, errdefs.ErrDataLoss)
	}
	return pid, nil
}

// known reports whether the runtime has state for id.
func (r *Runtime) known(id string) bool {
	_, err := os.Stat(filepath.Join(r.root, id))
	return err == nil
}

// run runs the runtime with --root and args, and returns its stdout; a
// failure carries the runtime's stderr.
func (r *Runtime) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := r.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := r.startCmd(cmd); err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.name, args[0], err)
	}
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s %s: %w", r.name, args[0], ctx.Err())
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %v: %s", r.name, args[0], err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// runtimePath is the PATH the runtime and conmon run with (runc and crun
// find criu there).
const runtimePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// command makes (without starting) the runtime command.
func (r *Runtime) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, r.exe.path(r.binary), append([]string{"--root", r.root}, args...)...)
	cmd.Env = []string{"PATH=" + runtimePath}
	return cmd
}

// startCmd starts cmd, in the cgroup v1 view of the host when the runtime
// needs it.
func (r *Runtime) startCmd(cmd *exec.Cmd) error {
	if !r.hideUnified {
		return cmd.Start()
	}
	return startInV1View(cmd)
}
