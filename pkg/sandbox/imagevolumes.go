package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
)

// Image volumes (KEP-4639): a CRI mount whose image field names an OCI
// image mounts that image's root filesystem read-only in the container.
// The i-th mount's read-only snapshot is named <container>-imagevol-<i>
// and mounted at <bundle>/imagevolumes/<i>; both are derived from the
// container's ID and the index, and the directory is made before the
// snapshot, so releaseContainer finds every one from the bundle alone.

const imageVolumesDir = "imagevolumes"

func imageVolumeKey(containerID string, i int) string {
	return containerID + "-imagevol-" + strconv.Itoa(i)
}

// checkImageVolumes refuses, before anything is made, image volumes the
// container cannot have: writable ones (as containerd does), and sub-paths
// that are not relative paths inside the image.
func checkImageVolumes(mounts []ctrconfig.Mount) error {
	for _, m := range mounts {
		if !m.IsImageVolume() {
			if m.ImageSubPath != "" {
				return fmt.Errorf("mount %q: image_sub_path without an image: %w", m.ContainerPath, errdefs.ErrInvalidArgument)
			}
			continue
		}
		if !m.Readonly {
			return fmt.Errorf("image volume %q must be read-only: %w", m.ContainerPath, errdefs.ErrInvalidArgument)
		}
		if m.HostPath != "" {
			return fmt.Errorf("image volume %q has a host path too: %w", m.ContainerPath, errdefs.ErrInvalidArgument)
		}
		if sub := m.ImageSubPath; sub != "" && (path.IsAbs(sub) || !fs.ValidPath(path.Clean(sub))) {
			return fmt.Errorf("image volume %q: sub-path %q must be a relative path inside the image: %w",
				m.ContainerPath, sub, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// mountImageVolumes mounts every image volume of c and returns the config
// its spec is built from: each image volume turned into a read-only bind
// mount of its snapshot (or of the sub-path in it). It records each
// volume's image ID in c.ImageVolumes. The images must be present
// (kubelet pulls them as it pulls the container's image): NotFound if not.
func (m *Manager) mountImageVolumes(ctx context.Context, c *Container) (ctrconfig.Container, error) {
	cfg := c.Config
	cfg.Mounts = slices.Clone(c.Config.Mounts) // c.Config keeps the volumes as asked
	for i, mnt := range c.Config.Mounts {
		if !mnt.IsImageVolume() {
			continue
		}
		img, err := m.opts.Images.Resolve(ctx, mnt.Image)
		if err != nil {
			return cfg, fmt.Errorf("image volume %q: image %s: %w", mnt.ContainerPath, mnt.Image, err)
		}
		src, err := m.mountImageVolume(ctx, c, i, img.ID, mnt.ImageSubPath)
		if err != nil {
			return cfg, fmt.Errorf("image volume %q: %w", mnt.ContainerPath, err)
		}
		bind := &cfg.Mounts[i]
		bind.HostPath, bind.Image, bind.ImageSubPath = src, "", ""
		if c.ImageVolumes == nil {
			c.ImageVolumes = map[int]string{}
		}
		c.ImageVolumes[i] = img.ID
	}
	return cfg, nil
}

// mountImageVolume mounts a read-only snapshot of image for c's i-th mount
// and returns the host path to bind: the mount point, or the sub-path
// resolved inside it (symlinks followed within the image, never out of it).
func (m *Manager) mountImageVolume(ctx context.Context, c *Container, i int, image, sub string) (string, error) {
	dir := filepath.Join(c.Bundle, imageVolumesDir, strconv.Itoa(i))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	mounts, err := m.opts.Images.PrepareView(ctx, imageVolumeKey(c.ID, i), image)
	if err != nil {
		return "", err
	}
	if err := mount.All(mounts, dir); err != nil {
		return "", fmt.Errorf("mount image %s: %w", image, err)
	}
	if sub == "" {
		return dir, nil
	}
	return resolveInside(dir, path.Clean(sub))
}

// resolveInside opens sub within dir (an os.Root: symlinks cannot lead out)
// and returns the resolved path of what it opened. Missing is InvalidArgument.
func resolveInside(dir, sub string) (string, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", err
	}
	defer func() { _ = root.Close() }()
	f, err := root.Open(sub)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("sub-path %q does not exist in the image: %w", sub, errdefs.ErrInvalidArgument)
		}
		return "", fmt.Errorf("sub-path %q: %w: %w", sub, err, errdefs.ErrInvalidArgument)
	}
	defer func() { _ = f.Close() }()
	resolved, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		return "", err
	}
	if resolved != dir && !strings.HasPrefix(resolved, dir+"/") {
		return "", fmt.Errorf("sub-path %q leads out of the image: %w", sub, errdefs.ErrInvalidArgument)
	}
	return resolved, nil
}

// releaseImageVolumes unmounts and removes every image volume of c, found
// from its bundle; nothing there is not an error.
func (m *Manager) releaseImageVolumes(ctx context.Context, c *Container) error {
	base := filepath.Join(c.Bundle, imageVolumesDir)
	entries, err := os.ReadDir(base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		i, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := mount.UnmountAll(filepath.Join(base, e.Name()), 0); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := m.opts.Images.RemoveRootfs(ctx, imageVolumeKey(c.ID, i)); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ImagesInUse lists the IDs of the images that containers' image volumes
// use: such an image is not removed while they exist.
func (m *Manager) ImagesInUse() map[string]bool {
	m.mu.Lock()
	entries := make([]*containerEntry, 0, len(m.containers))
	for _, e := range m.containers {
		entries = append(entries, e)
	}
	m.mu.Unlock()
	out := map[string]bool{}
	for _, e := range entries {
		e.mu.Lock()
		for _, id := range e.c.ImageVolumes {
			out[id] = true
		}
		e.mu.Unlock()
	}
	return out
}
