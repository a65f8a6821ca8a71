package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/unpack"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImportOptions tune Import.
type ImportOptions struct {
	// BaseName names images whose archive gives only a tag (an OCI layout's
	// org.opencontainers.image.ref.name "1.0" becomes BaseName:1.0).
	BaseName string
	// OnRead, when not nil, is called with the count of each read of the
	// archive files (the long part of an import; unpacking follows).
	OnRead func(n int)
}

// importedImage is one image found in an archive, before it is recorded.
type importedImage struct {
	names []reference.Named
	img   *Image
}

// Import reads image archives (OCI image layouts as written by
// `skopeo copy … oci-archive:`, and docker-archive tarballs as written by
// `docker save`), verifies every blob, unpacks the images for this host's
// platform and records them under the names the archives give.
//
// It is all-or-nothing over all the files: the images are recorded only
// when every archive has been read, verified and unpacked; on any error the
// import's content and snapshots are collected and the store is unchanged.
func (s *Store) Import(ctx context.Context, paths []string, opts ImportOptions) (_ []Image, retErr error) {
	defer s.transfer()()
	ctx = s.nsCtx(ctx)
	lease, err := s.leases.Create(ctx, leases.WithRandomID(), leases.WithExpiration(pullLeaseExpiry),
		leases.WithLabel(labelPull, "import"))
	if err != nil {
		return nil, fmt.Errorf("create import lease: %w", err)
	}
	defer s.dropLease(lease, &retErr)
	lctx := leases.WithLease(ctx, lease.ID)

	var found []importedImage
	for _, p := range paths {
		imgs, err := s.importFile(lctx, p, opts)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", p, err)
		}
		found = append(found, imgs...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Image, 0, len(found))
	for _, f := range found {
		img := f.img
		if len(f.names) == 0 {
			// No name: reachable by ID only.
			rec, err := s.recordID(ctx, img)
			if err != nil {
				return nil, err
			}
			img = rec
		}
		for _, n := range f.names {
			rec, err := s.record(ctx, n, img)
			if err != nil {
				return nil, err
			}
			img = rec
		}
		out = append(out, img.clone())
		s.log.InfoContext(ctx, "imported image", "id", img.ID, "names", img.RepoTags)
	}
	return out, nil
}

func (s *Store) importFile(ctx context.Context, path string, opts ImportOptions) ([]importedImage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if opts.OnRead != nil {
		r = countingReader{r: f, onRead: opts.OnRead}
	}
	idxDesc, err := archive.ImportIndex(ctx, verifyingArchiveStore{Store: s.content}, r)
	if err != nil {
		if errdefs.IsDataLoss(err) {
			return nil, err
		}
		return nil, fmt.Errorf("not a readable OCI layout or docker archive: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	var idx ocispec.Index
	if err := readJSON(ctx, s.content, idxDesc, &idx); err != nil {
		return nil, fmt.Errorf("read index: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if len(idx.Manifests) == 0 {
		return nil, fmt.Errorf("the archive holds no image: %w", errdefs.ErrInvalidArgument)
	}
	var out []importedImage
	for _, m := range idx.Manifests {
		name, err := archiveName(m.Annotations, opts.BaseName)
		if err != nil {
			return nil, err
		}
		img, err := s.unpackLocal(ctx, m)
		if err != nil {
			return nil, err
		}
		if i := indexOfImage(out, img.ID); i >= 0 && name != nil {
			out[i].names = append(out[i].names, name)
			continue
		}
		f := importedImage{img: img}
		if name != nil {
			f.names = append(f.names, name)
		}
		out = append(out, f)
	}
	return out, nil
}

// countingReader tells onRead of every read.
type countingReader struct {
	r      io.Reader
	onRead func(int)
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.onRead(n)
	}
	return n, err
}

func indexOfImage(imgs []importedImage, id string) int {
	for i, f := range imgs {
		if f.img.ID == id {
			return i
		}
	}
	return -1
}

// archiveName reads an image's name from its index annotations: the full
// name containerd and docker-archive record, else the OCI ref name, which
// may be a bare tag needing base.
func archiveName(ann map[string]string, base string) (reference.Named, error) {
	name := ann[images.AnnotationImageName]
	if name == "" {
		name = ann[ocispec.AnnotationRefName]
		if name != "" && !strings.ContainsAny(name, "/:@") {
			if base == "" {
				return nil, fmt.Errorf("image named only by tag %q: give a base name: %w", name, errdefs.ErrInvalidArgument)
			}
			name = base + ":" + name
		}
	}
	if name == "" {
		return nil, nil
	}
	named, err := reference.ParseDockerRef(name)
	if err != nil {
		return nil, fmt.Errorf("image name %q: %v: %w", name, err, errdefs.ErrInvalidArgument)
	}
	return named, nil
}

// unpackLocal labels and unpacks an image whose content is already in the
// store (under the caller's lease) and describes it.
func (s *Store) unpackLocal(ctx context.Context, target ocispec.Descriptor) (*Image, error) {
	expect := &diffIDs{content: s.content}
	unpacker, err := unpack.NewUnpacker(ctx, s.content, unpack.WithUnpackPlatform(unpack.Platform{
		Platform:       s.platform,
		SnapshotterKey: snapshotterName,
		Snapshotter:    s.sn,
		Applier:        &safeApplier{content: s.content, stats: &pullMeter{}, diffIDs: expect},
	}))
	if err != nil {
		return nil, err
	}
	children := images.SetChildrenMappedLabels(s.content, images.ChildrenHandler(s.content), images.ChildGCLabels)
	children = images.LimitManifests(images.FilterPlatforms(children, s.platform), s.platform, 1)
	dispatchErr := images.Dispatch(ctx, unpacker.Unpack(images.Handlers(expect.handler(), children)), nil, target)
	res, waitErr := unpacker.Wait()
	if err := errors.Join(dispatchErr, waitErr); err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("the archive lacks a blob: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		return nil, err
	}
	if res.Unpacks == 0 {
		return nil, fmt.Errorf("image %s has nothing for %s: %w", target.Digest, platformString(), errdefs.ErrNotFound)
	}
	return s.describe(ctx, target)
}

// recordID writes only the ID record of img. Callers hold s.mu.
func (s *Store) recordID(ctx context.Context, img *Image) (*Image, error) {
	if existing := s.index.byID[img.ID]; existing != nil {
		return existing, nil
	}
	rec := images.Image{Name: img.ID, Target: img.Target, Labels: map[string]string{labelImageID: img.ID}}
	if _, err := s.images.Create(ctx, rec); err != nil && !errdefs.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create image record %q: %w", img.ID, err)
	}
	s.index.add(img.ID, img)
	return img, nil
}

// Export writes the named images (for this host's platform) as one archive
// that is both an OCI image layout and a docker-archive, named by their tags.
func (s *Store) Export(ctx context.Context, w io.Writer, refs []string) error {
	ctx = s.nsCtx(ctx)
	var opts []archive.ExportOpt
	for _, ref := range refs {
		img, err := s.Get(ctx, ref)
		if err != nil {
			return err
		}
		opts = append(opts, archive.WithManifest(img.Manifest, img.RepoTags...))
	}
	if len(opts) == 0 {
		return fmt.Errorf("no image to export: %w", errdefs.ErrInvalidArgument)
	}
	if err := archive.Export(ctx, s.content, w, opts...); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// verifyingArchiveStore checks that a blob an OCI layout stores under
// blobs/<alg>/<hex> really has that digest before it is kept; containerd's
// importer only hashes it.
type verifyingArchiveStore struct{ content.Store }

func (v verifyingArchiveStore) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	var wo content.WriterOpts
	for _, o := range opts {
		if err := o(&wo); err != nil {
			return nil, err
		}
	}
	w, err := v.Store.Writer(ctx, opts...)
	if err != nil {
		return nil, err
	}
	rest, ok := strings.CutPrefix(wo.Ref, "tar-blobs/")
	if !ok {
		return w, nil
	}
	alg, hex, ok := strings.Cut(rest, "/")
	if !ok {
		return w, nil
	}
	return &archiveBlobWriter{Writer: w, want: digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)}, nil
}

type archiveBlobWriter struct {
	content.Writer
	want digest.Digest
}

func (w *archiveBlobWriter) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	if got := w.Digest(); got != w.want {
		return fmt.Errorf("blob %s in the archive has content with digest %s: %w", w.want, got, errdefs.ErrDataLoss)
	}
	return w.Writer.Commit(ctx, size, expected, opts...)
}
