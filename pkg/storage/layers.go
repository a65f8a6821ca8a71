package storage

import (
	"context"
	"fmt"
	"io"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ReadLayers hands fn each layer of the image ref, in order, as the
// uncompressed tar stream, straight from the content store: no snapshot,
// no mount (a checkpoint image's layers carry the checkpoint archive's
// files, which the caller unpacks with its own filter).
func (s *Store) ReadLayers(ctx context.Context, ref string, fn func(io.Reader) error) error {
	ctx = s.nsCtx(ctx)
	img, err := s.Get(ctx, ref)
	if err != nil {
		return err
	}
	var m ocispec.Manifest
	if err := readJSON(ctx, s.content, img.Manifest, &m); err != nil {
		return fmt.Errorf("read manifest of %s: %w", img.ID, err)
	}
	for _, l := range m.Layers {
		if err := s.readLayer(ctx, l, fn); err != nil {
			return fmt.Errorf("layer %s of %s: %w", l.Digest, img.ID, err)
		}
	}
	return nil
}

func (s *Store) readLayer(ctx context.Context, l ocispec.Descriptor, fn func(io.Reader) error) error {
	ra, err := s.content.ReaderAt(ctx, l)
	if err != nil {
		return err
	}
	defer func() { _ = ra.Close() }()
	r, err := compression.DecompressStream(content.NewReader(ra))
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	return fn(r)
}
