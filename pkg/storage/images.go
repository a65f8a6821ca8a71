package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is one image as the CRI sees it: identified by its config digest,
// known under any number of tags and repo digests.
type Image struct {
	ID          string             // config digest, "sha256:…"
	RepoTags    []string           // normalized, e.g. docker.io/library/busybox:1.36
	RepoDigests []string           // normalized, e.g. docker.io/library/busybox@sha256:…
	Size        int64              // bytes of manifest(s), config and compressed layers
	Target      ocispec.Descriptor // what was resolved: an index or a manifest
	Manifest    ocispec.Descriptor // the manifest for this host's platform
	Config      ocispec.Image      // the image config
	ChainID     digest.Digest      // snapshot of the unpacked rootfs
	// Annotations are the manifest's, and the index's over them when the
	// target is an index (a checkpoint image names its container there).
	Annotations map[string]string
	Pinned      bool
}

// recordKind tells what an image record's name is.
type recordKind int

const (
	recordTag recordKind = iota
	recordDigest
	recordID
)

// classifyName says which kind of record name n is. Names are written only
// by this package: a tag reference, a canonical reference, or an image ID.
func classifyName(n string) recordKind {
	if _, err := digest.Parse(n); err == nil {
		return recordID
	}
	if r, err := reference.ParseNormalizedNamed(n); err == nil {
		if _, ok := r.(reference.Canonical); ok {
			return recordDigest
		}
	}
	return recordTag
}

// imageIndex is the in-memory view of the image records, rebuilt at Open and
// kept in step with every change under Store.mu.
type imageIndex struct {
	byID  map[string]*Image
	names map[string]string // record name → image ID
}

func newImageIndex() *imageIndex {
	return &imageIndex{byID: map[string]*Image{}, names: map[string]string{}}
}

func (x *imageIndex) add(name string, img *Image) {
	x.names[name] = img.ID
	switch classifyName(name) {
	case recordTag:
		img.RepoTags = appendUnique(img.RepoTags, name)
	case recordDigest:
		img.RepoDigests = appendUnique(img.RepoDigests, name)
	}
	x.byID[img.ID] = img
}

func (x *imageIndex) removeName(name string) {
	id, ok := x.names[name]
	if !ok {
		return
	}
	delete(x.names, name)
	if img := x.byID[id]; img != nil {
		img.RepoTags = slices.DeleteFunc(img.RepoTags, func(s string) bool { return s == name })
		img.RepoDigests = slices.DeleteFunc(img.RepoDigests, func(s string) bool { return s == name })
	}
}

// namesOf lists every record name of image id.
func (x *imageIndex) namesOf(id string) []string {
	var out []string
	for n, i := range x.names {
		if i == id {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func appendUnique(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	s = append(s, v)
	slices.Sort(s)
	return s
}

// loadIndex reads every image record and the content it points at.
func (s *Store) loadIndex(ctx context.Context) (*imageIndex, error) {
	recs, err := s.images.List(ctx)
	if err != nil {
		return nil, err
	}
	idx := newImageIndex()
	for _, rec := range recs {
		id := rec.Labels[labelImageID]
		img := idx.byID[id]
		if img == nil {
			img, err = s.describe(ctx, rec.Target)
			if err != nil {
				// One broken record must not keep the daemon down: drop it and
				// let garbage collection take what only it referenced.
				s.log.WarnContext(ctx, "dropping unreadable image record", "name", rec.Name, "error", err)
				if err := s.images.Delete(ctx, rec.Name); err != nil && !errdefs.IsNotFound(err) {
					return nil, err
				}
				continue
			}
			img.Pinned = s.isPinned(img)
		}
		idx.add(rec.Name, img)
	}
	for _, img := range idx.byID {
		img.Pinned = s.isPinned(img)
	}
	return idx, nil
}

// describe reads the manifest and config behind target for this platform.
func (s *Store) describe(ctx context.Context, target ocispec.Descriptor) (*Image, error) {
	var manifestDesc ocispec.Descriptor
	var indexSize int64
	if images.IsIndexType(target.MediaType) {
		indexSize = target.Size
		mfs, err := images.Children(ctx, s.content, target)
		if err != nil {
			return nil, fmt.Errorf("read index %s: %w", target.Digest, err)
		}
		found := false
		for _, m := range mfs {
			if m.Platform != nil && s.platform.Match(*m.Platform) && images.IsManifestType(m.MediaType) {
				if !found || s.platform.Less(*m.Platform, *manifestDesc.Platform) {
					manifestDesc, found = m, true
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("index %s has no manifest for %s: %w", target.Digest, platformString(), errdefs.ErrNotFound)
		}
	} else {
		manifestDesc = target
	}
	var m ocispec.Manifest
	if err := readJSON(ctx, s.content, manifestDesc, &m); err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var cfg ocispec.Image
	if err := readJSON(ctx, s.content, m.Config, &cfg); err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	annotations := maps.Clone(m.Annotations)
	if images.IsIndexType(target.MediaType) {
		var idx ocispec.Index
		if err := readJSON(ctx, s.content, target, &idx); err != nil {
			return nil, fmt.Errorf("read index %s: %w", target.Digest, err)
		}
		if len(idx.Annotations) > 0 && annotations == nil {
			annotations = map[string]string{}
		}
		maps.Copy(annotations, idx.Annotations)
	}
	size := indexSize + manifestDesc.Size + m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	return &Image{
		ID:       m.Config.Digest.String(),
		Size:     size,
		Target:   target,
		Manifest: manifestDesc,
		Config:   cfg,
		ChainID:  identity.ChainID(cfg.RootFS.DiffIDs),

		Annotations: annotations,
	}, nil
}

func readJSON(ctx context.Context, p content.Provider, desc ocispec.Descriptor, v any) error {
	b, err := content.ReadBlob(ctx, p, desc)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", desc.Digest, err)
	}
	return nil
}

func (s *Store) isPinned(img *Image) bool {
	for _, p := range s.opts.Pinned {
		named, err := reference.ParseDockerRef(p)
		if err != nil {
			continue
		}
		if slices.Contains(img.RepoTags, named.String()) || slices.Contains(img.RepoDigests, named.String()) {
			return true
		}
	}
	return false
}

// List returns every image, ordered by ID.
func (s *Store) List(ctx context.Context) []Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Image, 0, len(s.index.byID))
	for _, img := range s.index.byID {
		out = append(out, img.clone())
	}
	slices.SortFunc(out, func(a, b Image) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Get finds an image by tag or digest reference (normalized the way docker
// does: "busybox" is docker.io/library/busybox:latest), by ID, or by a unique
// prefix of its ID. A malformed reference is InvalidArgument; an image that
// is not here is NotFound.
func (s *Store) Get(ctx context.Context, ref string) (Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, _, err := s.lookup(ref)
	if err != nil {
		return Image{}, err
	}
	return img.clone(), nil
}

// lookup resolves ref to an image and the record name that matched ("" for
// an ID or ID prefix). Callers hold s.mu.
func (s *Store) lookup(ref string) (*Image, string, error) {
	if ref == "" {
		return nil, "", fmt.Errorf("empty image reference: %w", errdefs.ErrInvalidArgument)
	}
	if len(ref) == 64 && strings.Trim(ref, "0123456789abcdef") == "" {
		ref = "sha256:" + ref // a full ID without its algorithm, as crictl passes them
	}
	if d, err := digest.Parse(ref); err == nil {
		if img := s.index.byID[d.String()]; img != nil {
			return img, "", nil
		}
		return nil, "", fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
	}
	if img := s.byIDPrefix(ref); img != nil {
		return img, "", nil
	}
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return nil, "", fmt.Errorf("parse image reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	name := named.String()
	if id, ok := s.index.names[name]; ok {
		return s.index.byID[id], name, nil
	}
	return nil, "", fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

// byIDPrefix finds the one image whose hex ID starts with ref (with or
// without "sha256:"), as crictl and docker accept short IDs.
func (s *Store) byIDPrefix(ref string) *Image {
	hex := strings.TrimPrefix(ref, "sha256:")
	if len(hex) < 3 || strings.Trim(hex, "0123456789abcdef") != "" {
		return nil
	}
	var found *Image
	for id, img := range s.index.byID {
		if strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), hex) {
			if found != nil {
				return nil // ambiguous: let reference parsing decide
			}
			found = img
		}
	}
	return found
}

func (img *Image) clone() Image {
	c := *img
	c.RepoTags = slices.Clone(img.RepoTags)
	c.RepoDigests = slices.Clone(img.RepoDigests)
	c.Annotations = maps.Clone(img.Annotations)
	return c
}
