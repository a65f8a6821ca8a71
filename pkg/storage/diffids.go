package storage

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// diffIDs tells the applier which diff ID the image config gives a layer,
// so that a layer whose content does not match is the image's fault
// (DataLoss), said before containerd's unpacker says it without a class
// ("wrong diff id calculated on extraction"). It learns the manifests of
// one pull or import through its handler.
type diffIDs struct {
	content   content.Provider
	mu        sync.Mutex
	manifests []ocispec.Descriptor
}

// handler records every manifest the dispatch walks.
func (d *diffIDs) handler() images.HandlerFunc {
	return func(_ context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		if images.IsManifestType(desc.MediaType) {
			d.mu.Lock()
			d.manifests = append(d.manifests, desc)
			d.mu.Unlock()
		}
		return nil, nil
	}
}

// of returns the diff ID that the config of a recorded manifest gives
// layer, when one does. By the time a layer is applied its manifest and
// config are in the store (the unpacker read them).
func (d *diffIDs) of(ctx context.Context, layer digest.Digest) (digest.Digest, bool) {
	if d == nil {
		return "", false
	}
	d.mu.Lock()
	ms := append([]ocispec.Descriptor(nil), d.manifests...)
	d.mu.Unlock()
	for _, m := range ms {
		var mf ocispec.Manifest
		if readJSON(ctx, d.content, m, &mf) != nil {
			continue
		}
		for i, l := range mf.Layers {
			if l.Digest != layer {
				continue
			}
			var cfg ocispec.Image
			if readJSON(ctx, d.content, mf.Config, &cfg) == nil && i < len(cfg.RootFS.DiffIDs) {
				return cfg.RootFS.DiffIDs[i], true
			}
		}
	}
	return "", false
}

// checkDiffID fails a layer whose content's diff ID is not the config's.
func (d *diffIDs) checkDiffID(ctx context.Context, layer, got digest.Digest) error {
	want, ok := d.of(ctx, layer)
	if !ok || want == got {
		return nil
	}
	return fmt.Errorf("layer %s has content with diff ID %s, the image config says %s: %w", layer, got, want, errdefs.ErrDataLoss)
}
