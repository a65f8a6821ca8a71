package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
)

// labelGCRoot keeps a snapshot (and its parents) from garbage collection.
const labelGCRoot = "containerd.io/gc.root"

// PrepareRootfs makes a writable snapshot named key on top of image's
// unpacked layers and returns the mounts that assemble it. The snapshot is
// a garbage-collection root: it and its parent layers outlive the image
// record, so removing an image never pulls a container's rootfs away.
func (s *Store) PrepareRootfs(ctx context.Context, key, image string) ([]mount.Mount, error) {
	ctx = s.nsCtx(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	img, _, err := s.lookup(image)
	if err != nil {
		return nil, err
	}
	mounts, err := s.sn.Prepare(ctx, key, img.ChainID.String(), snapshots.WithLabels(map[string]string{
		labelGCRoot: time.Now().UTC().Format(time.RFC3339),
	}))
	if err != nil {
		return nil, fmt.Errorf("prepare rootfs %q from image %s: %w", key, img.ID, err)
	}
	return mounts, nil
}

// PrepareView makes a read-only snapshot named key of image's unpacked
// layers (an image volume) and returns the mounts that assemble it. Like a
// rootfs it is a garbage-collection root; RemoveRootfs removes it.
func (s *Store) PrepareView(ctx context.Context, key, image string) ([]mount.Mount, error) {
	ctx = s.nsCtx(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	img, _, err := s.lookup(image)
	if err != nil {
		return nil, err
	}
	mounts, err := s.sn.View(ctx, key, img.ChainID.String(), snapshots.WithLabels(map[string]string{
		labelGCRoot: time.Now().UTC().Format(time.RFC3339),
	}))
	if err != nil {
		return nil, fmt.Errorf("prepare view %q of image %s: %w", key, img.ID, err)
	}
	return mounts, nil
}

// RootfsMounts returns the mounts of an existing rootfs snapshot.
func (s *Store) RootfsMounts(ctx context.Context, key string) ([]mount.Mount, error) {
	return s.sn.Mounts(s.nsCtx(ctx), key)
}

// RemoveRootfs deletes a rootfs snapshot's record; a missing one is not
// an error. The caller unmounts it first. Its directories go with the
// next garbage collection, run in the background (as containerd's
// scheduler does): RemoveContainer does not wait for the walk and the
// unlinks of its writable layer.
func (s *Store) RemoveRootfs(ctx context.Context, key string) error {
	ctx = s.nsCtx(ctx)
	s.mu.Lock()
	err := s.sn.Remove(ctx, key)
	s.mu.Unlock()
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove rootfs %q: %w", key, err)
	}
	if err == nil {
		s.collectGarbageLater()
	}
	return nil
}

func platformString() string { return platforms.Format(platforms.DefaultSpec()) }
