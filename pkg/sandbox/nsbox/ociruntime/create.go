package ociruntime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/cleanup"
	"github.com/cradle-runtime/cradle/pkg/execfifo"
)

// createTimeout bounds how long conmon may take to create a container when
// ctx has no earlier deadline.
const createTimeout = 2 * time.Minute

// CreateOptions describe a container to create.
type CreateOptions struct {
	ID      string
	Bundle  string // holds config.json and the rootfs
	LogPath string // the CRI log file conmon writes
	Stdin   bool   // give the container a stdin pipe, fed by attach clients
	// StdinOnce closes the container's stdin when the first attach client
	// detaches; without it stdin stays open for the next one.
	StdinOnce bool
	Terminal  bool // the process has a terminal (process.terminal in config.json)
	// Restore, when set, is a directory of CRIU images: the container is
	// restored from them (`runtime restore --detach`, CRIU's log in the
	// bundle) and is running when Create returns, instead of created.
	Restore string
}

// syncMessage is what conmon writes to its sync pipe: the container's pid,
// or a negative number and the runtime's error.
type syncMessage struct {
	Data    int    `json:"data"`
	Message string `json:"message,omitempty"`
}

// Create makes the container through conmon (`runtime create`) and returns
// its init's pid. On failure nothing is left behind and the error carries
// the runtime's message.
func (r *Runtime) Create(ctx context.Context, o CreateOptions) (pid int, err error) {
	if err := checkID(o.ID); err != nil {
		return 0, err
	}
	if !filepath.IsAbs(o.Bundle) || !filepath.IsAbs(o.LogPath) || (o.Restore != "" && !filepath.IsAbs(o.Restore)) {
		return 0, fmt.Errorf("create %s: bundle %q and log path %q must be absolute: %w", o.ID, o.Bundle, o.LogPath, errdefs.ErrInvalidArgument)
	}
	if fi, err := os.Stat(filepath.Dir(o.LogPath)); err != nil || !fi.IsDir() {
		return 0, fmt.Errorf("create %s: log directory %s: not a directory: %w", o.ID, filepath.Dir(o.LogPath), errdefs.ErrFailedPrecondition)
	}
	if o.Restore != "" {
		if err := r.checkCRIU(ctx); err != nil {
			return 0, fmt.Errorf("restore %s: %w", o.ID, err)
		}
	}
	if err := os.Mkdir(r.dir(o.ID), 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return 0, fmt.Errorf("create %s: %w", o.ID, errdefs.ErrAlreadyExists)
		}
		return 0, fmt.Errorf("create %s: %w", o.ID, err)
	}
	var undo cleanup.Stack
	defer func() {
		if err != nil {
			if uerr := undo.Run(); uerr != nil {
				r.log.WarnContext(ctx, "undo a failed create", "id", o.ID, "err", uerr)
			}
		}
	}()
	undo.Push(func(ctx context.Context) error { return r.removeState(ctx, o.ID) })
	if err := r.writeMeta(o); err != nil {
		return 0, fmt.Errorf("create %s: %w", o.ID, err)
	}
	// conmon's verdict is awaited even when ctx ends (bounded by
	// createTimeout): a create abandoned half-way could finish after its
	// undo and leave a container nobody knows.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	defer cancel()
	msg, err := r.startConmon(cctx, o)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", o.ID, err)
	}
	if msg.Data <= 0 {
		var criuLog string
		if o.Restore != "" {
			criuLog = criuLogTail(o.Bundle, "restore.log")
		}
		return 0, fmt.Errorf("create %s: %s: %s%s: %w", o.ID, r.name, strings.TrimSpace(msg.Message), criuLog, errdefs.ErrFailedPrecondition)
	}
	if ctx.Err() != nil {
		return 0, fmt.Errorf("create %s: %w", o.ID, ctx.Err())
	}
	r.log.DebugContext(ctx, "created", "id", o.ID, "pid", msg.Data)
	return msg.Data, nil
}

func (r *Runtime) writeMeta(o CreateOptions) error {
	m := meta{Bundle: o.Bundle, LogPath: o.LogPath}
	m.FifoStart = o.Restore == "" && !execfifo.HasPoststartHooks(o.Bundle)
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := os.Mkdir(r.exitDir(o.ID), 0o700); err != nil {
		return err
	}
	return os.WriteFile(r.metaFile(o.ID), b, 0o600)
}

// conmonArgs are conmon's arguments for o.
func (r *Runtime) conmonArgs(o CreateOptions) []string {
	args := []string{
		"--api-version", "1",
		"-c", o.ID, "-u", o.ID, "-n", o.ID,
		"-r", r.exe.path(r.binary), "--runtime-arg", "--root=" + r.root,
		"-b", o.Bundle,
		"-p", r.pidFile(o.ID),
		"--conmon-pidfile", r.conmonPid(o.ID),
		"--exit-dir", r.exitDir(o.ID),
		"-l", "k8s-file:" + o.LogPath,
		"--socket-dir-path", filepath.Dir(r.attachLink(o.ID)),
		"--log-level", "info",
	}
	if o.Stdin {
		args = append(args, "-i")
		if !o.StdinOnce {
			args = append(args, "--leave-stdin-open")
		}
	}
	if o.Terminal {
		args = append(args, "-t")
	}
	if o.Restore != "" {
		// conmon runs `runtime restore --detach --image-path DIR
		// --work-path BUNDLE` instead of `runtime create`.
		args = append(args, "--restore", o.Restore)
	}
	return args
}

// startConmon runs conmon, which creates the container and daemonizes, and
// reads its verdict from the sync pipe.
func (r *Runtime) startConmon(ctx context.Context, o CreateOptions) (syncMessage, error) {
	var msg syncMessage
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return msg, err
	}
	defer syncR.Close()
	// conmon daemonizes and keeps its stdout and stderr: give it a file,
	// never a pipe someone waits on.
	logf, err := os.OpenFile(r.conmonLog(o.ID), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		_ = syncW.Close()
		return msg, err
	}
	defer logf.Close()
	cmd := exec.Command(r.conmon, r.conmonArgs(o)...)
	cmd.Env = []string{"PATH=" + runtimePath, "_OCI_SYNCPIPE=3"}
	cmd.Stdout, cmd.Stderr = logf, logf
	// conmon writes its "oom" marker into its working directory: keep it in
	// the container's state directory. (--persist-dir would move it too,
	// but also moves the exit file conmon 2.1 writes into it.)
	cmd.Dir = r.dir(o.ID)
	cmd.ExtraFiles = []*os.File{syncW}
	err = r.startCmd(cmd)
	_ = syncW.Close()
	if err != nil {
		return msg, fmt.Errorf("start conmon: %w", err)
	}
	r.failpoint("createcontainer:monitor")
	// The first conmon process exits as soon as it has forked its daemon.
	if err := cmd.Wait(); err != nil {
		return msg, fmt.Errorf("conmon: %v: %s: %w", err, r.tail(o.ID), errdefs.ErrFailedPrecondition)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = syncR.SetReadDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = syncR.SetReadDeadline(time.Now()) })
	defer stop()
	if err := json.NewDecoder(syncR).Decode(&msg); err != nil {
		if ctx.Err() != nil {
			return msg, fmt.Errorf("wait for conmon: %w", ctx.Err())
		}
		return msg, fmt.Errorf("read conmon's sync pipe: %v: %s: %w", err, r.tail(o.ID), errdefs.ErrFailedPrecondition)
	}
	return msg, nil
}

// tail is the end of conmon's own log, for error messages.
func (r *Runtime) tail(id string) string {
	b, _ := os.ReadFile(r.conmonLog(id))
	s := strings.TrimSpace(string(b))
	if len(s) > 1024 {
		s = s[len(s)-1024:]
	}
	if s == "" {
		return "(no output)"
	}
	return s
}
