package sandbox

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrcheckpoint"
	"github.com/google/go-cmp/cmp"
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

// A container whose image is a broken checkpoint archive, or one whose
// image is missing, is refused, and nothing of it is left; so with each
// step of its create failed in turn.
func TestCreateFromArchiveRollsBack(t *testing.T) {
	broken := func(t *testing.T) string {
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
		return archive
	}
	for _, tc := range []struct {
		name    string
		archive func(t *testing.T) string
		failAt  string
		is      func(error) bool
	}{
		{"broken archive", broken, "", errdefs.IsInvalidArgument},
		{"missing image", func(t *testing.T) string { return writeArchive(t, "missing:1") }, "", errdefs.IsNotFound},
		{"image step", func(t *testing.T) string { return writeArchive(t, "busybox:1") }, "image", isInjected},
		{"rootfs step", func(t *testing.T) string { return writeArchive(t, "busybox:1") }, "rootfs", isInjected},
		{"runtime step", func(t *testing.T) string { return writeArchive(t, "busybox:1") }, "create", isInjected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newContainerEnv(t)
			ctx := context.Background()
			pod := e.readyPod(t)
			cfg := containerConfig("c")
			cfg.Image = tc.archive(t)
			e.f.failAt = tc.failAt
			if _, err := e.m.CreateContainer(ctx, pod, cfg); !tc.is(err) {
				t.Fatalf("create: %v", err)
			}
			e.f.failAt = ""
			e.assertNoContainers(t)
			if entries, _ := os.ReadDir(filepath.Join(e.dir, "containers")); len(entries) != 0 {
				t.Errorf("bundles left: %v", entries)
			}
			if _, err := e.m.CreateContainer(ctx, pod, cfg); tc.failAt != "" && err != nil {
				t.Errorf("create after the rollback: %v", err)
			}
			if err := e.m.RemovePod(ctx, pod); err != nil {
				t.Fatal(err)
			}
			e.assertNoContainers(t)
		})
	}
}

func isInjected(err error) bool { return errors.Is(err, errInjected) }

// writeArchive writes a checkpoint archive of a container of image, with
// one CRIU image file, and returns its path.
func writeArchive(t *testing.T, image string) string {
	t.Helper()
	dir := t.TempDir()
	images := filepath.Join(dir, "images")
	if err := os.Mkdir(images, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(images, "pstree.img"), []byte("orig"), 0o600); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "c.tar")
	err := ctrcheckpoint.Write(context.Background(), archive, ctrcheckpoint.Source{
		Config: ctrcheckpoint.Config{ID: "orig", Name: "c", RootfsImageName: image, RootfsImageRef: "sha256:img"},
		Spec:   []byte(`{"process":{"args":["sh","-c","count"],"env":["A=1"],"cwd":"/work"}}`), Images: images,
	}, dir)
	if err != nil {
		t.Fatal(err)
	}
	return archive
}

// criuRuntime is the fake runtime with CRIU: a checkpoint writes one
// image file (once dumping, if set, is closed); a restore makes the
// container running.
type criuRuntime struct {
	*fakeRuntime
	dumpStarted, dumping chan struct{} // if set: told when a dump starts; closed to let it finish
}

func (r criuRuntime) CheckpointContainer(_ context.Context, _ *Pod, c *Container, imageDir, _ string) error {
	if r.dumping != nil {
		r.dumpStarted <- struct{}{}
		<-r.dumping
	}
	return os.WriteFile(filepath.Join(imageDir, "pstree.img"), []byte(c.ID), 0o600)
}

func (r criuRuntime) RestoreContainer(_ context.Context, _ *Pod, c *Container) (int, error) {
	if _, err := os.Stat(filepath.Join(c.RestoreImages, "pstree.img")); err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exited[c.ID] = make(chan struct{})
	r.started[c.ID] = true
	return 4343, nil
}

// A container created from a checkpoint archive is restored when it is
// started, and stays Created across a daemon restart until then (the
// runtime knows it only once restored).
func TestRestoreFromArchive(t *testing.T) {
	e := newContainerEnv(t)
	e.m.opts.Backends["runc"] = criuRuntime{fakeRuntime: e.rt}
	ctx := context.Background()
	pod := e.readyPod(t)
	archive := writeArchive(t, "busybox:1")
	cfg := containerConfig("restored")
	cfg.Image = archive
	id, err := e.m.CreateContainer(ctx, pod, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := e.m.Container(id)
	if c.ImageRef != "busybox:1" || c.RestoreImages == "" {
		t.Errorf("created from the archive: image %q, restore images %q", c.ImageRef, c.RestoreImages)
	}
	e.rt.mu.Lock()
	spec := e.rt.created[id]
	delete(e.rt.exited, id) // as nsbox: the runtime makes it only when restored
	e.rt.mu.Unlock()
	if got := spec.Process.Args; !cmp.Equal(got, []string{"sh", "-c", "count"}) || spec.Process.Cwd != "/work" {
		t.Errorf("restored spec's process: %v in %s, want the checkpointed one", got, spec.Process.Cwd)
	}
	e.rt.detach()
	m2 := e.manager(t)
	m2.opts.Backends["runc"] = criuRuntime{fakeRuntime: e.rt}
	if c, _ := m2.Container(id); c.State != ContainerCreated {
		t.Fatalf("after a restart: %v, want Created", c.State)
	}
	if err := m2.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if c, _ := m2.Container(id); c.State != ContainerRunning || c.Pid != 4343 {
		t.Errorf("after start: %v pid %d, want Running, the restored pid", c.State, c.Pid)
	}
	if err := m2.RemovePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	e.assertNoContainers(t)
}

// While a checkpoint dumps, the container is listed and its status read
// (kubelet's relist goes on); a second checkpoint of it is refused. The
// dump reaches the archive's writer, which needs a mounted overlay: the
// fake's bind-mounted rootfs is refused there.
func TestCheckpointDoesNotBlockTheContainer(t *testing.T) {
	e := newContainerEnv(t)
	started, dumping := make(chan struct{}), make(chan struct{})
	e.m.opts.Backends["runc"] = criuRuntime{fakeRuntime: e.rt, dumpStarted: started, dumping: dumping}
	ctx := context.Background()
	pod := e.readyPod(t)
	id, err := e.m.CreateContainer(ctx, pod, containerConfig("c"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	loc := filepath.Join(t.TempDir(), "c.tar")
	first := make(chan error, 1)
	go func() { first <- e.m.CheckpointContainer(ctx, id, loc, 0) }()
	<-started
	if err := e.m.CheckpointContainer(ctx, id, loc, 0); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "being checkpointed") {
		t.Errorf("a second checkpoint while the first dumps: %v", err)
	}
	listed := make(chan int, 1)
	go func() { listed <- len(e.m.ListContainers(ContainerFilter{})) }()
	select {
	case n := <-listed:
		if n != 1 {
			t.Errorf("listed %d containers, want 1", n)
		}
	case <-time.After(5 * time.Second):
		t.Error("ListContainers waits for the checkpoint")
	}
	c, err := e.m.Container(id)
	if err != nil || c.State != ContainerRunning {
		t.Errorf("status during the checkpoint: %v, %v", c.State, err)
	}
	if err := os.WriteFile(filepath.Join(c.Bundle, "config.json"), []byte("{}"), 0o600); err != nil { // the fake runtime writes none
		t.Fatal(err)
	}
	close(dumping)
	if err := <-first; !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "not an overlay") {
		t.Errorf("the first checkpoint: %v, want the archive writer's refusal of a bind-mounted rootfs", err)
	}
	if err := e.m.RemovePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	e.assertNoContainers(t)
}
