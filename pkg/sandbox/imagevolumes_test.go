package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func imageVolumeConfig(name, sub string, readonly bool) ctrconfig.Container {
	cfg := containerConfig(name)
	cfg.Mounts = []ctrconfig.Mount{
		{ContainerPath: "/data", HostPath: "/tmp"},
		{ContainerPath: "/mnt/image", Readonly: readonly, Image: "busybox:1", ImageSubPath: sub},
	}
	return cfg
}

func specMount(spec *specs.Spec, dst string) *specs.Mount {
	for i := range spec.Mounts {
		if spec.Mounts[i].Destination == dst {
			return &spec.Mounts[i]
		}
	}
	return nil
}

func TestImageVolumeMountsTheImageReadOnly(t *testing.T) {
	e := newContainerEnv(t)
	ctx := context.Background()
	pod := e.readyPod(t)
	id, err := e.m.CreateContainer(ctx, pod, imageVolumeConfig("c", "etc", true))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := e.m.Container(id)
	if c.ImageVolumes[1] != "sha256:img" || len(c.ImageVolumes) != 1 {
		t.Errorf("image volumes = %v", c.ImageVolumes)
	}
	m := specMount(e.rt.created[id], "/mnt/image")
	if m == nil {
		t.Fatalf("no image volume mount in the spec: %+v", e.rt.created[id].Mounts)
	}
	want := filepath.Join(c.Bundle, imageVolumesDir, "1", "etc")
	if m.Source != want || m.Type != "bind" || !strings.Contains(strings.Join(m.Options, ","), "ro") {
		t.Errorf("mount = %+v, want a read-only bind of %s", m, want)
	}
	if _, err := os.Stat(filepath.Join(m.Source, "passwd")); err != nil {
		t.Errorf("the image's files at the source: %v", err)
	}
	if !e.img.rootfs[imageVolumeKey(id, 1)] {
		t.Errorf("no view snapshot: %v", e.img.rootfs)
	}
	if err := e.m.RemovePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	e.assertNoContainers(t)
}

func TestImageVolumeBadInputChangesNothing(t *testing.T) {
	e := newContainerEnv(t)
	ctx := context.Background()
	pod := e.readyPod(t)
	for name, cfg := range map[string]ctrconfig.Container{
		"writable":       imageVolumeConfig("c", "", false),
		"missing subdir": imageVolumeConfig("c", "not-existing", true),
		"escaping":       imageVolumeConfig("c", "../..", true),
		"absolute":       imageVolumeConfig("c", "/etc", true),
		"symlink out":    imageVolumeConfig("c", "out", true),
	} {
		if err := os.Symlink("/", filepath.Join(e.img.source, "out")); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
		if _, err := e.m.CreateContainer(ctx, pod, cfg); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: err = %v, want InvalidArgument", name, err)
		}
		e.assertNoContainers(t)
	}
	if got := e.m.ImagesInUse(); len(got) != 0 {
		t.Errorf("images in use = %v", got)
	}
}

func TestImageVolumeInUseAndReleasedWithoutItsCheckpoint(t *testing.T) {
	e := newContainerEnv(t)
	ctx := context.Background()
	pod := e.readyPod(t)
	id, err := e.m.CreateContainer(ctx, pod, imageVolumeConfig("c", "", true))
	if err != nil {
		t.Fatal(err)
	}
	if !e.m.ImagesInUse()["sha256:img"] {
		t.Errorf("the volume's image is not in use: %v", e.m.ImagesInUse())
	}
	// The container's record is lost: release finds the volume from the bundle.
	if err := e.m.releaseContainer(ctx, &Container{ID: id, Bundle: filepath.Join(e.dir, "containers", id)},
		&Pod{ID: pod, Handler: "runc"}, e.rt); err != nil {
		t.Fatal(err)
	}
	if e.img.rootfs[imageVolumeKey(id, 1)] {
		t.Error("view snapshot left")
	}
	_ = e.m.RemovePod(ctx, pod)
}
