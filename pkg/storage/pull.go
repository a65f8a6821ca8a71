package storage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/containerd/v2/core/unpack"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/semaphore"
)

// pullLeaseExpiry bounds how long a pull's lease can keep content alive if
// the daemon dies without dropping it (recovery drops it sooner, at start).
const pullLeaseExpiry = 24 * time.Hour

// Pull fetches ref (a tag or digest reference), verifies every blob against
// its digest, unpacks the layers for this host's platform into snapshots,
// and records the image under its tag, repo digest and ID.
//
// A pull that fails leaves nothing behind: its content lives under a lease
// until the image record exists, and a failed pull drops the lease and
// collects garbage.
func (s *Store) Pull(ctx context.Context, ref string, auth *Auth) (Image, PullStats, error) {
	return s.PullWithProgress(ctx, ref, auth, nil)
}

// PullWithProgress is Pull that also calls progress, when not nil, about
// once a second with what the pull has done so far, from another goroutine.
func (s *Store) PullWithProgress(ctx context.Context, ref string, auth *Auth, progress func(PullStats)) (_ Image, _ PullStats, retErr error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return Image{}, PullStats{}, fmt.Errorf("parse image reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	start := time.Now()
	defer s.transfer()()
	ctx = s.nsCtx(ctx)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	tr := newTransfer()
	tr.report = progress
	defer tr.watch(ctx, cancel, s.opts.PullProgressTimeout)()

	lease, err := s.leases.Create(ctx, leases.WithRandomID(), leases.WithExpiration(pullLeaseExpiry),
		leases.WithLabel(labelPull, named.String()))
	if err != nil {
		return Image{}, PullStats{}, fmt.Errorf("create pull lease: %w", err)
	}
	defer s.dropLease(lease, &retErr)

	target, err := s.fetch(leases.WithLease(ctx, lease.ID), named, auth, tr)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
			err = fmt.Errorf("%w (%v)", cause, err)
		}
		return Image{}, PullStats{}, classifyPullError(named, err)
	}
	s.failpoint("pullimage:fetched")
	img, err := s.describe(ctx, target)
	if err != nil {
		return Image{}, PullStats{}, fmt.Errorf("read pulled image %s: %w", named, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.record(ctx, named, img)
	if err != nil {
		return Image{}, PullStats{}, err
	}
	s.failpoint("pullimage:recorded")
	stats := tr.stats.snapshot(time.Since(start))
	s.log.InfoContext(ctx, "pulled image", "ref", named.String(), "id", rec.ID, "bytes", stats.Bytes,
		"duration", stats.Total, "fetch", stats.Fetch, "verify", stats.Verify, "unpack", stats.Unpack)
	return rec.clone(), stats, nil
}

// dropLease ends a pull's lease on a fresh context (the pull's may be
// cancelled) and, when the pull failed, collects what it left.
func (s *Store) dropLease(l leases.Lease, pullErr *error) {
	ctx, cancel := context.WithTimeout(s.nsCtx(context.Background()), time.Minute)
	defer cancel()
	if err := s.leases.Delete(ctx, l); err != nil && !errdefs.IsNotFound(err) {
		s.log.Warn("drop pull lease", "lease", l.ID, "error", err)
	}
	if *pullErr == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.collectGarbage(ctx); err != nil {
		s.log.Warn("collect a failed pull's content", "error", err)
	}
}

// fetch resolves named, fetches what this platform needs and unpacks it.
// It returns the resolved descriptor (an index or a manifest).
func (s *Store) fetch(ctx context.Context, named reference.Named, auth *Auth, tr *transfer) (ocispec.Descriptor, error) {
	resolver := s.resolver(ctx, auth, tr)
	name, desc, err := resolver.Resolve(ctx, named.String())
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolve %s: %w", named, err)
	}
	if desc.MediaType == images.MediaTypeDockerSchema1Manifest {
		return ocispec.Descriptor{}, fmt.Errorf("%s is a Docker schema 1 image, which is not supported: %w", named, errdefs.ErrNotImplemented)
	}
	fetcher, err := resolver.Fetcher(ctx, name)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("fetcher for %s: %w", name, err)
	}
	limiter := semaphore.NewWeighted(int64(s.opts.MaxConcurrentDownloads))
	expect := &diffIDs{content: s.content}
	unpacker, err := unpack.NewUnpacker(ctx, s.content,
		unpack.WithUnpackPlatform(unpack.Platform{
			Platform:       s.platform,
			SnapshotterKey: snapshotterName,
			Snapshotter:    s.sn,
			Applier:        &safeApplier{content: s.content, stats: &tr.stats, diffIDs: expect, failpoint: s.failpoint},
		}),
		unpack.WithLimiter(limiter),
		// Fetch layers even when their snapshot exists (a rootfs can keep
		// snapshots whose image, and content, were removed), so an image in
		// the store always has all its blobs, for export and re-unpacking.
		unpack.WithFetchAllContent())
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	children := images.SetChildrenMappedLabels(s.content, images.ChildrenHandler(s.content), images.ChildGCLabels)
	children = images.LimitManifests(images.FilterPlatforms(children, s.platform), s.platform, 1)
	distSource, err := docker.AppendDistributionSourceLabel(s.content, named.String())
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	handler := unpacker.Unpack(images.Handlers(
		remotes.FetchHandler(verifyingIngester{Ingester: s.content, meter: &tr.stats}, fetcher),
		expect.handler(),
		children,
		distSource,
	))
	dispatchErr := images.Dispatch(ctx, handler, limiter, desc)
	res, waitErr := unpacker.Wait()
	if err := errors.Join(dispatchErr, waitErr); err != nil {
		return ocispec.Descriptor{}, err
	}
	if res.Unpacks == 0 {
		return ocispec.Descriptor{}, fmt.Errorf("%s has no image for %s: %w", named, platformString(), errdefs.ErrNotFound)
	}
	return desc, nil
}

// record writes the image's records (ID, repo digest, tag) and updates the
// index. A tag that named another image moves to this one. Callers hold s.mu.
func (s *Store) record(ctx context.Context, named reference.Named, img *Image) (*Image, error) {
	names := []string{img.ID, named.Name() + "@" + img.Target.Digest.String()}
	if _, ok := named.(reference.Tagged); ok {
		names = append(names, named.String())
	}
	if existing := s.index.byID[img.ID]; existing != nil {
		img = existing
	}
	for _, n := range names {
		rec := images.Image{Name: n, Target: img.Target, Labels: map[string]string{labelImageID: img.ID}}
		if _, err := s.images.Create(ctx, rec); errdefs.IsAlreadyExists(err) {
			if old, ok := s.index.names[n]; ok && old == img.ID {
				continue
			}
			_, err = s.images.Update(ctx, rec)
			if err != nil {
				return nil, fmt.Errorf("update image record %q: %w", n, err)
			}
		} else if err != nil {
			return nil, fmt.Errorf("create image record %q: %w", n, err)
		}
		s.index.removeName(n)
		s.index.add(n, img)
	}
	img.Pinned = s.isPinned(img)
	return img, nil
}

// classifyPullError turns what the resolver, fetcher and unpacker return
// into errdefs classes that name the registry.
func classifyPullError(named reference.Named, err error) error {
	registry := reference.Domain(named)
	var status remoteerrors.ErrUnexpectedStatus
	switch {
	case errors.Is(err, ErrUnsafeLayer), errdefs.IsDataLoss(err), errdefs.IsNotImplemented(err):
		return fmt.Errorf("pull %s: %w", named, err)
	case errors.Is(err, docker.ErrInvalidAuthorization):
		return fmt.Errorf("pull %s: registry %s refused the credentials (or the repository does not exist): %v: %w",
			named, registry, err, errdefs.ErrUnauthenticated)
	case errors.As(err, &status):
		return fmt.Errorf("pull %s: registry %s answered %s: %w", named, registry, status.Status, statusClass(status.StatusCode))
	case errdefs.IsNotFound(err):
		return fmt.Errorf("pull %s: image not found at registry %s: %w", named, registry, err)
	case errors.Is(err, syscall.ECONNREFUSED), isNetError(err), errdefs.IsUnavailable(err):
		return fmt.Errorf("pull %s: registry %s unreachable: %v: %w", named, registry, err, errdefs.ErrUnavailable)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("pull %s: registry %s: %w", named, registry, err)
	}
	return fmt.Errorf("pull %s from registry %s: %w", named, registry, err)
}

// isNetError reports whether err comes from the network: a dial, read or
// write on a connection, a name lookup or an HTTP request. Not any
// net.Error: syscall.Errno implements that interface too, so an ENOENT of
// the unpacker would read as "registry unreachable".
func isNetError(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	var u *url.Error
	return errors.As(err, &op) || errors.As(err, &dns) || errors.As(err, &u)
}

func statusClass(code int) error {
	switch {
	case code == 401:
		return errdefs.ErrUnauthenticated
	case code == 403:
		return errdefs.ErrPermissionDenied
	case code == 404:
		return errdefs.ErrNotFound
	case code == 429:
		return errdefs.ErrResourceExhausted
	case code >= 500:
		return errdefs.ErrUnavailable
	}
	return errdefs.ErrUnknown
}
