package ociruntime_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// Checkpoint's refusals; for a crun built without CRIU (Debian 12's), a
// clear FailedPrecondition before anything runs.
func TestCheckpointErrors(t *testing.T) {
	for _, name := range runtimes {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, name)
			ctx := context.Background()
			dir := t.TempDir()
			if err := e.rt.Checkpoint(ctx, "nosuch", dir, dir); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("Checkpoint of an unknown container = %v, want ErrNotFound", err)
			}
			running := e.run(t, "sleep", "1000")
			if err := e.rt.Checkpoint(ctx, running.id, "images", dir); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("Checkpoint to a relative path = %v, want ErrInvalidArgument", err)
			}
			out, err := exec.Command(e.cfg.Binary, "--version").Output()
			if err != nil {
				t.Fatal(err)
			}
			if name != "crun" || slices.Contains(strings.Fields(string(out)), "+CRIU") {
				return
			}
			err = e.rt.Checkpoint(ctx, running.id, filepath.Join(dir, "images"), dir)
			if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "without CRIU") {
				t.Errorf("Checkpoint through a crun without CRIU = %v, want ErrFailedPrecondition", err)
			}
		})
	}
}
