package storage

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/diff"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// safeApplier is the diff.Applier the unpacker uses: containerd's archive
// code with a layerGuard on every entry. Layers are written straight into
// the snapshot directory (the bind source, or overlay's upperdir with
// whiteouts converted to overlay's form), so unpacking mounts nothing.
type safeApplier struct {
	content   content.Provider
	stats     *pullMeter
	diffIDs   *diffIDs     // what the image's configs say; nil checks nothing
	failpoint func(string) // the crash tests' hook; nil: none
}

var _ diff.Applier = (*safeApplier)(nil)

func (a *safeApplier) Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount, opts ...diff.ApplyOpt) (ocispec.Descriptor, error) {
	start := time.Now()
	defer func() { a.stats.addUnpack(time.Since(start)) }()
	if !images.IsLayerType(desc.MediaType) {
		return ocispec.Descriptor{}, fmt.Errorf("layer %s has unsupported media type %q: %w", desc.Digest, desc.MediaType, errdefs.ErrNotImplemented)
	}
	ra, err := a.content.ReaderAt(ctx, desc)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("open layer %s: %w", desc.Digest, err)
	}
	defer ra.Close()
	ds, err := compression.DecompressStream(content.NewReader(ra))
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("decompress layer %s: %w", desc.Digest, err)
	}
	defer ds.Close()
	digester := digest.Canonical.Digester()
	r := io.TeeReader(corruptReader{ds}, digester.Hash())

	if err := applyTo(ctx, mounts, r); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("apply layer %s: %w", desc.Digest, corruptClass(err))
	}
	// The diff ID covers the whole stream, tar padding included.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("read layer %s: %w", desc.Digest, corruptClass(err))
	}
	if err := a.diffIDs.checkDiffID(ctx, desc.Digest, digester.Digest()); err != nil {
		return ocispec.Descriptor{}, err
	}
	if a.failpoint != nil {
		a.failpoint("pullimage:layer")
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digester.Digest()}, nil
}

// applyTo applies the tar stream r onto the snapshot described by mounts.
func applyTo(ctx context.Context, mounts []mount.Mount, r io.Reader) error {
	if len(mounts) == 1 {
		m := mounts[0]
		switch {
		case m.Type == "bind" && !hasOption(m.Options, "ro"):
			_, err := archive.Apply(ctx, m.Source, r, archive.WithFilter(newLayerGuard(m.Source, nil).check))
			return err
		case m.Type == "overlay":
			upper, lowers := overlayDirs(m.Options)
			if upper != "" {
				_, err := archive.Apply(ctx, upper, r, archive.WithFilter(newLayerGuard(upper, lowers).check),
					archive.WithConvertWhiteout(archive.OverlayConvertWhiteout), archive.WithParents(lowers))
				return err
			}
		}
	}
	return mount.WithTempMount(ctx, mounts, func(root string) error {
		_, err := archive.Apply(ctx, root, r, archive.WithFilter(newLayerGuard(root, nil).check))
		return err
	})
}

func overlayDirs(options []string) (upper string, lowers []string) {
	for _, o := range options {
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			upper = v
		} else if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			lowers = strings.Split(v, ":")
		}
	}
	return upper, lowers
}

// corruptReader marks every error of the decompressed stream (a bad gzip
// header or checksum, a truncated or garbled stream) as errCorruptLayer:
// the blob matched its digest, so it is the image that is broken.
type corruptReader struct{ r io.Reader }

func (c corruptReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: %w", errCorruptLayer, err)
	}
	return n, err
}

// errCorruptLayer is the class of a layer whose content is no valid
// (compressed) tar stream.
var errCorruptLayer = fmt.Errorf("layer content is corrupt: %w", errdefs.ErrDataLoss)

// corruptClass gives err the DataLoss class when it says the layer's
// stream is not a valid tar stream: errors of the decompressor
// (corruptReader), and those archive/tar makes of a stream that ends early
// or holds a bad header. Other errors (the filesystem's) keep theirs.
func corruptClass(err error) error {
	if errors.Is(err, errCorruptLayer) {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, tar.ErrHeader) || errors.Is(err, tar.ErrFieldTooLong) {
		return fmt.Errorf("%w: %w", errCorruptLayer, err)
	}
	return err
}

func hasOption(opts []string, o string) bool { return slices.Contains(opts, o) }
