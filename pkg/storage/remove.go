package storage

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
)

// Remove deletes an image, then garbage-collects what only it used.
//
// By tag: that tag goes; the image goes too when it was its last tag.
// By repo digest, ID or ID prefix: the image goes with all its names.
// An image that is not here is not an error (RemoveImage is idempotent).
// Rootfs snapshots made from the image (PrepareRootfs) survive it. A pinned
// image is removed only with force (FailedPrecondition otherwise).
func (s *Store) Remove(ctx context.Context, ref string, force bool) error {
	ctx = s.nsCtx(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	img, matched, err := s.lookup(ref)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if img.Pinned && !force {
		return fmt.Errorf("image %s (%s) is pinned by the configuration (images.sandbox_image or images.pinned): "+
			"`cradle images rm --force` removes it: %w", ref, img.ID, errdefs.ErrFailedPrecondition)
	}
	names := s.index.namesOf(img.ID)
	if matched != "" && classifyName(matched) == recordTag && len(img.RepoTags) > 1 {
		names = []string{matched}
	}
	for _, n := range names {
		if err := s.images.Delete(ctx, n); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete image record %q: %w", n, err)
		}
		s.index.removeName(n)
	}
	if len(s.index.namesOf(img.ID)) == 0 {
		delete(s.index.byID, img.ID)
	}
	s.log.InfoContext(ctx, "removed image", "ref", ref, "id", img.ID, "names", names)
	if err := s.collectGarbage(ctx); err != nil {
		// The image is gone; what it leaves is collected on the next run.
		s.log.WarnContext(ctx, "garbage collection after image removal failed", "error", err)
	}
	return nil
}
