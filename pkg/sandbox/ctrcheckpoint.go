package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrcheckpoint"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// CheckpointContainer writes a checkpoint archive of a running container
// at location (an absolute path of a tar file, in the format kubelet's
// checkpoint API documents): its processes' CRIU images, its spec and
// metadata and its writable layer's changes. The container keeps running
// (kubelet's forensic checkpoint). timeout 0: until ctx ends.
//
// The CRIU images are written in a directory of the container's bundle,
// removed on return (after a crash, by Recover); the archive is an unnamed
// file until it is complete and linked into place.
func (m *Manager) CheckpointContainer(ctx context.Context, id, location string, timeout time.Duration) error {
	if location == "" || !filepath.IsAbs(location) {
		return fmt.Errorf("checkpoint location %q must be an absolute path: %w", location, errdefs.ErrInvalidArgument)
	}
	e, err := m.containerEntryOf(id)
	if err != nil {
		return err
	}
	// CRIU's dump and the archive take long: the container's lock is not
	// held meanwhile (status, lists and stats go on); a stop or removal
	// meanwhile makes the dump fail.
	e.mu.Lock()
	snapshot := *e.c
	e.mu.Unlock()
	c := &snapshot
	if c.State != ContainerRunning {
		return fmt.Errorf("container %s is %s, not running: %w", c.ID, c.State, errdefs.ErrFailedPrecondition)
	}
	pod, b, err := m.podOf(c)
	if err != nil {
		return err
	}
	if !e.dumping.TryLock() {
		return fmt.Errorf("container %s is being checkpointed already: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	defer e.dumping.Unlock()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if err := m.checkpoint(ctx, pod, c, b, location); err != nil {
		return fmt.Errorf("checkpoint container %s: %w", c.ID, err)
	}
	m.log.InfoContext(ctx, "container checkpointed", "container", c.ID, "location", location)
	return nil
}

// checkpoint has the backend dump c (a copy) into a work directory of its
// bundle and writes the archive from it. The caller holds e.dumping.
func (m *Manager) checkpoint(ctx context.Context, pod *Pod, c *Container, b Backend, location string) error {
	work, err := os.MkdirTemp(c.Bundle, checkpointWorkGlob)
	if err != nil {
		return err
	}
	defer func() {
		if err := os.RemoveAll(work); err != nil {
			m.log.WarnContext(ctx, "remove checkpoint work directory", "container", c.ID, "error", err)
		}
	}()
	images := filepath.Join(work, ctrcheckpoint.ImagesDir)
	if err := os.Mkdir(images, 0o700); err != nil {
		return err
	}
	if err := b.CheckpointContainer(ctx, pod, c, images, work); err != nil {
		return err
	}
	m.failpoint("checkpointcontainer:dumped")
	spec, err := os.ReadFile(filepath.Join(c.Bundle, "config.json"))
	if err != nil {
		return err
	}
	upper, err := rootfsUpper(c.Rootfs())
	if err != nil {
		return err
	}
	return ctrcheckpoint.Write(ctx, location, ctrcheckpoint.Source{
		Config: ctrcheckpoint.Config{
			ID: c.ID, Name: containerName(pod, c.Config),
			RootfsImage: c.ImageRef, RootfsImageRef: c.ImageID, RootfsImageName: c.ImageRef,
			Runtime: pod.Handler, CreatedTime: c.CreatedAt, CheckpointedTime: time.Now().UTC(),
		},
		Spec: spec, Images: images, RootfsUpper: upper,
		Written: func() { m.failpoint("checkpointcontainer:written") },
	}, work)
}

// rootfsUpper finds the writable layer of the overlay mounted at rootfs.
func rootfsUpper(rootfs string) (string, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(rootfs))
	if err != nil {
		return "", err
	}
	if len(mounts) == 0 {
		return "", fmt.Errorf("rootfs %s is not mounted: %w", rootfs, errdefs.ErrFailedPrecondition)
	}
	mi := mounts[len(mounts)-1] // the topmost
	if mi.FSType != "overlay" {
		return "", fmt.Errorf("rootfs %s is %s, not an overlay: its changes cannot be found: %w", rootfs, mi.FSType, errdefs.ErrFailedPrecondition)
	}
	for _, o := range strings.Split(mi.VFSOptions, ",") {
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			return v, nil
		}
	}
	return "", nil // a read-only overlay: no changes
}

// checkpointWorkGlob matches the work directories CheckpointContainer
// makes in a container's bundle.
const checkpointWorkGlob = "checkpoint-*"

// removeCheckpointWork removes the work directories a daemon that died
// mid-checkpoint left in c's bundle.
func (m *Manager) removeCheckpointWork(ctx context.Context, c *Container) {
	left, _ := filepath.Glob(filepath.Join(c.Bundle, checkpointWorkGlob))
	for _, dir := range left {
		if err := os.RemoveAll(dir); err != nil {
			m.log.WarnContext(ctx, "remove an interrupted checkpoint's work directory", "container", c.ID, "error", err)
		}
	}
}

// restoreDir is where a container created from a checkpoint archive has
// the archive unpacked: in its bundle, removed with it.
func restoreDir(c *Container) string { return filepath.Join(c.Bundle, "restore") }

// unpackCheckpoint unpacks the checkpoint a container is created from: the
// archive its image reference names or, when checkpointImage is set, that
// image's layers. It records where the CRIU images are, and returns the
// image its rootfs is made from and the spec it was checkpointed with.
func (m *Manager) unpackCheckpoint(ctx context.Context, c *Container, checkpointImage string) (image string, dumped *specs.Spec, err error) {
	archive := c.ImageRef
	dir := restoreDir(c)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	var cfg ctrcheckpoint.Config
	var data []byte
	if checkpointImage != "" {
		cfg, data, err = ctrcheckpoint.ExtractImage(ctx, archive, dir, func(fn func(io.Reader) error) error {
			return m.opts.Images.ReadLayers(ctx, checkpointImage, fn)
		})
	} else {
		cfg, data, err = ctrcheckpoint.Extract(ctx, archive, dir)
	}
	if err != nil {
		return "", nil, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return "", nil, fmt.Errorf("checkpoint archive %s: %s: %v: %w", archive, ctrcheckpoint.SpecDump, err, errdefs.ErrInvalidArgument)
	}
	image = cfg.RootfsImageName
	if image == "" {
		image = cfg.RootfsImageRef
	}
	if image == "" {
		return "", nil, fmt.Errorf("checkpoint archive %s names no image: %w", archive, errdefs.ErrInvalidArgument)
	}
	c.RestoreImages = filepath.Join(dir, ctrcheckpoint.ImagesDir)
	m.log.InfoContext(ctx, "container restored from a checkpoint", "container", c.ID, "archive", archive,
		"checkpointed", cfg.ID, "image", image)
	return image, &spec, nil
}

// restoredProcess gives a restored container's spec the process it was
// checkpointed with (its arguments, environment and directory: what exec
// and status report), the rest being the new container's.
func restoredProcess(spec, dumped *specs.Spec) {
	if spec.Process == nil || dumped.Process == nil {
		return
	}
	spec.Process.Args, spec.Process.Env, spec.Process.Cwd = dumped.Process.Args, dumped.Process.Env, dumped.Process.Cwd
}

// startProcess starts a created container's process: restored from its
// checkpoint's CRIU images, or started anew.
func (m *Manager) startProcess(ctx context.Context, pod *Pod, c *Container, b Backend) error {
	if c.RestoreImages == "" {
		return b.StartContainer(ctx, pod, c)
	}
	pid, err := b.RestoreContainer(ctx, pod, c)
	if err != nil {
		return err
	}
	c.Pid = pid
	return nil
}
