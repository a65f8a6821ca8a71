package sandbox

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// The fake backend cannot checkpoint (as a microVM's cannot): refused
// with FailedPrecondition; so are containers that do not run, and bad
// locations; nothing is written.
func TestCheckpointContainerRefusals(t *testing.T) {
	e := newContainerEnv(t)
	ctx := context.Background()
	pod := e.readyPod(t)
	id, err := e.m.CreateContainer(ctx, pod, containerConfig("c"))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	loc := filepath.Join(out, "c.tar")
	if err := e.m.CheckpointContainer(ctx, id, loc, 0); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "not running") {
		t.Errorf("created container: %v, want FailedPrecondition (not running)", err)
	}
	if err := e.m.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, id, loc string
		is            func(error) bool
		says          string
	}{
		{"backend without CRIU", id, loc, errdefs.IsFailedPrecondition, "cannot checkpoint"},
		{"unknown container", "nosuch", loc, errdefs.IsNotFound, ""},
		{"relative location", id, "c.tar", errdefs.IsInvalidArgument, "absolute"},
		{"empty location", id, "", errdefs.IsInvalidArgument, "absolute"},
	} {
		err := e.m.CheckpointContainer(ctx, tc.id, tc.loc, 0)
		if !tc.is(err) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("written: %v", entries)
	}
	c, _ := e.m.Container(id)
	if entries, _ := filepath.Glob(filepath.Join(c.Bundle, "checkpoint-*")); len(entries) != 0 {
		t.Errorf("work directories left: %v", entries)
	}
	if err := e.m.RemovePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	e.assertNoContainers(t)
}

// A container whose image is a broken checkpoint archive is refused as
// InvalidArgument, and nothing of it is left.
func TestCreateFromBrokenArchiveRollsBack(t *testing.T) {
	e := newContainerEnv(t)
	ctx := context.Background()
	pod := e.readyPod(t)
	archive := filepath.Join(t.TempDir(), "broken.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	_ = tw.WriteHeader(&tar.Header{Name: "config.dump", Mode: 0o600, Size: 2, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("{}"))
	_ = tw.Close()
	_ = f.Close()
	cfg := containerConfig("c")
	cfg.Image.Image = archive
	if _, err := e.m.CreateContainer(ctx, pod, cfg); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("create from a broken archive: %v, want InvalidArgument", err)
	}
	e.assertNoContainers(t)
	if entries, _ := os.ReadDir(filepath.Join(e.dir, "containers")); len(entries) != 0 {
		t.Errorf("bundles left: %v", entries)
	}
	if err := e.m.RemovePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
}
