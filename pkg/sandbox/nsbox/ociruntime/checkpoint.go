package ociruntime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

// Checkpoint writes the CRIU images of a running container's processes
// into imageDir (`runtime checkpoint --leave-running`); CRIU's log and
// work files go to workDir. The container keeps running.
func (r *Runtime) Checkpoint(ctx context.Context, id, imageDir, workDir string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if !filepath.IsAbs(imageDir) || !filepath.IsAbs(workDir) {
		return fmt.Errorf("checkpoint %s: image and work paths must be absolute: %w", id, errdefs.ErrInvalidArgument)
	}
	if !r.known(id) {
		return fmt.Errorf("checkpoint %s: %w", id, errdefs.ErrNotFound)
	}
	if err := r.checkCRIU(ctx); err != nil {
		return fmt.Errorf("checkpoint %s: %w", id, err)
	}
	if _, err := r.run(ctx, "checkpoint", "--image-path", imageDir, "--work-path", workDir, "--leave-running", id); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("checkpoint %s: %w", id, err)
		}
		// What CRIU cannot dump is the container's state or the host's
		// (its log says which), not a fault of cradle's.
		return fmt.Errorf("checkpoint %s: %v%s: %w", id, err, criuLogTail(workDir, "dump.log"), errdefs.ErrFailedPrecondition)
	}
	return nil
}

// checkCRIU fails when the runtime binary cannot checkpoint: crun is
// built with CRIU optionally, and says so in its version's feature line
// ("+CRIU"); Debian 12's crun 1.8 is built without it.
func (r *Runtime) checkCRIU(ctx context.Context) error {
	if _, err := lookPath("criu"); err != nil {
		return fmt.Errorf("%s needs criu, not found in %s: %w", r.name, runtimePath, errdefs.ErrFailedPrecondition)
	}
	if !r.crun {
		return nil
	}
	out, err := r.run(ctx, "--version")
	if err != nil {
		return err
	}
	for _, f := range strings.Fields(string(out)) {
		if f == "+CRIU" {
			return nil
		}
	}
	return fmt.Errorf("%s (%s) was built without CRIU support (its --version lists no +CRIU): %w", r.name, r.binary, errdefs.ErrFailedPrecondition)
}

// criuLogTail is what CRIU's log in dir says went wrong, for error
// messages: its last few Error lines (where it gave up), else its end.
func criuLogTail(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil || len(b) == 0 {
		return ""
	}
	var errs []string
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, "Error (") {
			errs = append(errs, strings.TrimSpace(line))
		}
	}
	errs = errs[max(0, len(errs)-4):]
	if len(errs) > 0 {
		return fmt.Sprintf(" (CRIU's %s: %s)", name, strings.Join(errs, "; "))
	}
	if len(b) > 1024 {
		b = b[len(b)-1024:]
	}
	return fmt.Sprintf(" (CRIU's %s ends: %s)", name, b)
}

// lookPath finds name in the runtime's PATH.
func lookPath(name string) (string, error) {
	for _, dir := range filepath.SplitList(runtimePath) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, os.ErrNotExist)
}
