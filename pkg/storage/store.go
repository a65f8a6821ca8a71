// Package storage is cradle's embedded image store: containerd's content
// store, bbolt metadata (images, leases, garbage collection) and the overlayfs
// snapshotter, driven in-process with no containerd daemon.
//
// On-disk layout under Options.Root:
//
//	lock            flock held while a Store is open; holds the owner's pid
//	metadata.db     bbolt: images, leases, content and snapshot references
//	content/        blobs by digest (containerd's local content store)
//	snapshots/      overlayfs snapshots (containerd's overlay snapshotter)
package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/containerd/v2/plugins/snapshots/overlay"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	bolt "go.etcd.io/bbolt"
)

const (
	// namespace is the containerd metadata namespace cradle keeps everything in.
	namespace = "cradle"
	// snapshotterName is the only snapshotter built in.
	snapshotterName = "overlayfs"
	// labelPull marks the lease that keeps a pull's content alive until the
	// image record exists. Leases carrying it are stale after a restart.
	labelPull = "cradle.io/pull"
	// labelImageID is set on every image record: the image's config digest.
	labelImageID = "cradle.io/image.id"
)

// Options configures a Store.
type Options struct {
	Root string // directory for all persistent image state

	RegistryConfigDir      string        // containerd-style certs.d directory
	MaxConcurrentDownloads int           // blobs fetched at once per pull
	DialTimeout            time.Duration // connecting to a registry
	ResponseHeaderTimeout  time.Duration // a registry starting to answer
	PullProgressTimeout    time.Duration // a pull with no bytes for this long is cancelled
	Pinned                 []string      // references reported pinned

	Logger *slog.Logger
	// Failpoint, when set, is called with the name of each step of a pull
	// as it completes ("pullimage:layer", "pullimage:fetched",
	// "pullimage:recorded"): the crash tests' hook.
	Failpoint func(step string)
	// Idle, when set, is called from a goroutine of its own each time the
	// last pull or import in progress ends (succeeded or not): the
	// daemon's moment to give their buffers back to the OS.
	Idle func()
}

// failpoint marks a step done for the crash tests (Options.Failpoint).
func (s *Store) failpoint(step string) {
	if s.opts.Failpoint != nil {
		s.opts.Failpoint(step)
	}
}

// Store is the image store. It is safe for concurrent use.
type Store struct {
	opts     Options
	log      *slog.Logger
	lock     *os.File
	bolt     *bolt.DB
	db       *metadata.DB
	content  content.Store
	sn       snapshots.Snapshotter
	images   images.Store
	leases   leases.Manager
	platform platforms.MatchComparer

	mu    sync.Mutex // guards index and serialises record changes with GC
	index *imageIndex

	gcMu      sync.Mutex     // guards gcPending
	gcPending bool           // a background collection is scheduled and has not begun
	gcRuns    sync.WaitGroup // background collections; Close waits for them

	transfers atomic.Int64 // pulls and imports in progress (Options.Idle)
}

// transfer counts a pull or import in progress; the func it returns ends
// it, and calls Options.Idle when it was the last one.
func (s *Store) transfer() (done func()) {
	s.transfers.Add(1)
	return func() {
		if s.transfers.Add(-1) == 0 && s.opts.Idle != nil {
			go s.opts.Idle()
		}
	}
}

// Open opens (creating if needed) the store at opts.Root, takes its lock,
// and recovers from an interrupted previous run: leases of pulls that never
// finished are dropped and their content and snapshots garbage-collected.
func Open(ctx context.Context, opts Options) (_ *Store, retErr error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxConcurrentDownloads < 1 {
		opts.MaxConcurrentDownloads = 1
	}
	if err := os.MkdirAll(opts.Root, 0o711); err != nil {
		return nil, fmt.Errorf("create image root: %w", err)
	}
	lock, err := lockRoot(opts.Root)
	if err != nil {
		return nil, err
	}
	s := &Store{opts: opts, log: opts.Logger, lock: lock, platform: platforms.Default()}
	defer func() {
		if retErr != nil {
			_ = s.Close()
		}
	}()
	if err := s.openBackends(ctx); err != nil {
		return nil, err
	}
	ctx = namespaces.WithNamespace(ctx, namespace)
	if err := s.recover(ctx); err != nil {
		return nil, fmt.Errorf("recover image store: %w", err)
	}
	idx, err := s.loadIndex(ctx)
	if err != nil {
		return nil, fmt.Errorf("load images: %w", err)
	}
	s.index = idx
	return s, nil
}

func (s *Store) openBackends(ctx context.Context) error {
	cs, err := local.NewStore(filepath.Join(s.opts.Root, "content"))
	if err != nil {
		return fmt.Errorf("open content store: %w", err)
	}
	snRoot := filepath.Join(s.opts.Root, "snapshots")
	sn, err := overlay.NewSnapshotter(snRoot)
	if err != nil {
		return fmt.Errorf("open overlayfs snapshotter: %w", err)
	}
	if err := removeUncommittedSnapshots(ctx, sn, snRoot); err != nil {
		_ = sn.Close()
		return err
	}
	bdb, err := bolt.Open(filepath.Join(s.opts.Root, "metadata.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		_ = sn.Close()
		return fmt.Errorf("open metadata: %w", err)
	}
	s.bolt = bdb
	s.db = metadata.NewDB(bdb, cs, map[string]snapshots.Snapshotter{snapshotterName: sn})
	if err := s.db.Init(ctx); err != nil {
		return fmt.Errorf("init metadata: %w", err)
	}
	s.content = s.db.ContentStore()
	s.sn = s.db.Snapshotter(snapshotterName)
	s.images = metadata.NewImageStore(s.db)
	s.leases = metadata.NewLeaseManager(s.db)
	return nil
}

// recover removes what an interrupted run left: pull leases (no pull is in
// flight at start), unfinished ingests, and whatever only they referenced.
//
// Assumptions: the Store lock is held, so no other process uses the store;
// image records are written only after their content and snapshots are
// complete, so every record found here is whole.
func (s *Store) recover(ctx context.Context) error {
	stale, err := s.leases.List(ctx, fmt.Sprintf("labels.%q", labelPull))
	if err != nil {
		return fmt.Errorf("list leases: %w", err)
	}
	for _, l := range stale {
		s.log.InfoContext(ctx, "dropping lease of an interrupted pull", "lease", l.ID, "image", l.Labels[labelPull])
		if err := s.leases.Delete(ctx, l); err != nil {
			return fmt.Errorf("delete lease %s: %w", l.ID, err)
		}
	}
	statuses, err := s.content.ListStatuses(ctx)
	if err != nil {
		return fmt.Errorf("list ingests: %w", err)
	}
	for _, st := range statuses {
		if err := s.content.Abort(ctx, st.Ref); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("abort ingest %s: %w", st.Ref, err)
		}
	}
	if len(stale) > 0 || len(statuses) > 0 {
		s.log.InfoContext(ctx, "recovered image store", "stale_pulls", len(stale), "stale_ingests", len(statuses))
	}
	// A rootfs removed just before a kill -9 left its directories behind
	// with no record (RemoveRootfs leaves them to a background collection).
	// The collection sweeps a snapshotter's directories only once it has
	// seen that snapshotter lose a record in this process: a throwaway
	// snapshot with no reference, collected at once, makes it sweep.
	if _, err := s.sn.Prepare(ctx, sweepKey, ""); err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("prepare the sweep snapshot: %w", err)
	}
	return s.collectGarbage(ctx)
}

// sweepKey names the throwaway snapshot recover makes to have the garbage
// collection sweep the snapshot directories.
const sweepKey = "cradle-gc-sweep"

// collectGarbage deletes content and snapshots no image, lease or rootfs
// references.
func (s *Store) collectGarbage(ctx context.Context) error {
	st, err := s.db.GarbageCollect(ctx)
	if err != nil {
		return fmt.Errorf("garbage collect: %w", err)
	}
	s.log.DebugContext(ctx, "garbage collected", "elapsed", st.Elapsed())
	return nil
}

// collectGarbageLater runs a garbage collection in the background, once
// for any number of calls made before it begins. What it deletes is no
// longer referenced by any record, so no reader misses it; a daemon killed
// before it ran leaves it to the collection Open runs.
func (s *Store) collectGarbageLater() {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	if s.gcPending {
		return
	}
	s.gcPending = true
	s.gcRuns.Add(1)
	go func() {
		defer s.gcRuns.Done()
		ctx := s.nsCtx(context.Background())
		s.mu.Lock()
		defer s.mu.Unlock()
		s.gcMu.Lock()
		s.gcPending = false // a removal from now on schedules another
		s.gcMu.Unlock()
		if err := s.collectGarbage(ctx); err != nil {
			s.log.WarnContext(ctx, "background garbage collection; the next one retries", "error", err)
		}
	}()
}

// waitGarbage waits for the background collections scheduled so far.
func (s *Store) waitGarbage() { s.gcRuns.Wait() }

// removeUncommittedSnapshots removes the snapshot directories that the
// overlay snapshotter's own metadata does not list. Its Prepare makes
// snapshots/new-N, takes the next ID from its bolt sequence and renames the
// directory to snapshots/<ID> inside the transaction, before the commit: a
// kill -9 between the rename and the commit leaves snapshots/<ID> while the
// sequence is not advanced, so the next Prepare is handed the same ID and
// fails (rename .../new-N .../<ID>: file exists). The snapshotter's Cleanup
// removes every directory its metadata does not know (garbage collection
// calls it only after it removed something); nothing mounts these
// directories, and no snapshot can be under way while the store is opening.
func removeUncommittedSnapshots(ctx context.Context, sn snapshots.Snapshotter, root string) error {
	c, ok := sn.(snapshots.Cleaner)
	if !ok {
		return nil
	}
	err := c.Cleanup(ctx)
	if errdefs.IsNotFound(err) {
		// No snapshot was ever committed (its bucket does not exist yet):
		// every directory is a leftover.
		err = removeEntries(filepath.Join(root, "snapshots"))
	}
	if err != nil {
		return fmt.Errorf("remove uncommitted snapshot directories: %w", err)
	}
	return nil
}

// removeEntries removes everything in dir; a missing dir is empty.
func removeEntries(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// Close releases the store. It does not unmount anything: snapshots are
// mounted only by their users.
func (s *Store) Close() error {
	s.gcRuns.Wait()
	var errs []error
	if s.db != nil {
		for _, sn := range s.db.Snapshotters() {
			errs = append(errs, sn.Close())
		}
		errs = append(errs, s.db.Close())
	} else if s.bolt != nil {
		errs = append(errs, s.bolt.Close())
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close())
	}
	return errors.Join(errs...)
}

// SnapshotRoot is the directory holding unpacked layers and writable layers,
// the image filesystem kubelet asks about.
func (s *Store) SnapshotRoot() string { return filepath.Join(s.opts.Root, "snapshots") }

func (s *Store) nsCtx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, namespace)
}
