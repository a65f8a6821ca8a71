package storage

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	"golang.org/x/sys/unix"
)

func TestRemoveTagsDigestsAndIDs(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	img := fixtures.Busybox(t)
	for _, tag := range []string{"1", "2", "3"} {
		reg.Push(t, reg.Ref("tags:"+tag), img)
	}
	s := newStore(t, t.TempDir())
	ctx := context.Background()
	var id string
	for _, tag := range []string{"1", "2", "3"} {
		got, _, err := s.Pull(ctx, reg.Ref("tags:"+tag), nil)
		if err != nil {
			t.Fatal(err)
		}
		id = got.ID
	}
	if imgs := s.List(ctx); len(imgs) != 1 || len(imgs[0].RepoTags) != 3 {
		t.Fatalf("one image with three tags expected, got %+v", imgs)
	}

	// One tag of several: only that tag goes.
	if err := s.Remove(ctx, reg.Ref("tags:1"), false); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, id)
	if err != nil || !slices.Equal(got.RepoTags, []string{reg.Ref("tags:2"), reg.Ref("tags:3")}) {
		t.Fatalf("after removing tag 1: %v, %v", got.RepoTags, err)
	}
	if _, err := s.Get(ctx, reg.Ref("tags:1")); err == nil {
		t.Error("removed tag still resolves")
	}
	// By ID: the image goes with all its names, and its content is collected.
	if err := s.Remove(ctx, id, false); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, s)
	// Idempotent, also for an ID without its algorithm.
	if err := s.Remove(ctx, id, false); err != nil {
		t.Errorf("second remove: %v", err)
	}
	if err := s.Remove(ctx, strings.Repeat("0", 64), false); err != nil {
		t.Errorf("remove of an unknown bare ID: %v", err)
	}
	if err := s.Remove(ctx, reg.Ref("tags:2"), false); err != nil {
		t.Errorf("remove of a gone tag: %v", err)
	}

	// The last tag takes the image with it; so does a repo digest.
	for _, ref := range []string{reg.Ref("tags:2"), reg.Ref("tags@" + manifestDigest(t, img))} {
		if _, _, err := s.Pull(ctx, reg.Ref("tags:2"), nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(ctx, ref, false); err != nil {
			t.Fatal(err)
		}
		assertEmpty(t, s)
	}
}

func TestTagMovesToNewImage(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	old, next := fixtures.Busybox(t), fixtures.NonRoot(t, "1000")
	reg.Push(t, reg.Ref("app:latest"), old)
	s := newStore(t, t.TempDir())
	ctx := context.Background()
	first, _, err := s.Pull(ctx, reg.Ref("app:latest"), nil)
	if err != nil {
		t.Fatal(err)
	}
	reg.Push(t, reg.Ref("app:latest"), next)
	second, _, err := s.Pull(ctx, reg.Ref("app:latest"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.ID == second.ID {
		t.Fatal("test images share an ID")
	}
	prev, err := s.Get(ctx, first.ID)
	if err != nil || len(prev.RepoTags) != 0 || len(prev.RepoDigests) != 1 {
		t.Errorf("old image after its tag moved: tags %v digests %v, %v", prev.RepoTags, prev.RepoDigests, err)
	}
	cur, _ := s.Get(ctx, reg.Ref("app:latest"))
	if cur.ID != second.ID {
		t.Errorf("tag resolves to %s, want %s", cur.ID, second.ID)
	}
}

func TestRootfsSurvivesImageRemoval(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("busybox:1"), fixtures.ManyLayers(t, 4))
	s := newStore(t, t.TempDir())
	ctx := context.Background()
	img, _, err := s.Pull(ctx, reg.Ref("busybox:1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := s.PrepareRootfs(ctx, "container-1", img.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareRootfs(ctx, "container-1", img.ID); err == nil {
		t.Error("second rootfs under the same key: no error")
	}
	if err := s.Remove(ctx, img.ID, false); err != nil {
		t.Fatal(err)
	}
	err = mount.WithTempMount(ctx, mounts, func(root string) error {
		if _, err := os.Stat(filepath.Join(root, "bin/busybox")); err != nil {
			t.Errorf("rootfs lost its image's files: %v", err)
		}
		return os.WriteFile(filepath.Join(root, "written"), make([]byte, 1<<20), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	_, containerFs, err := s.FsUsage(ctx)
	if err != nil || containerFs.UsedBytes < 1<<20 || containerFs.Inodes == 0 {
		t.Errorf("container fs usage %+v, %v: want the 1 MiB written", containerFs, err)
	}
	u, err := s.RootfsUsage(ctx, "container-1")
	if err != nil || u.UsedBytes < 1<<20 || u.Inodes == 0 || u.Mountpoint != s.SnapshotRoot() {
		t.Errorf("rootfs usage %+v, %v: want the 1 MiB written", u, err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(s.SnapshotRoot(), &fs); err != nil {
		t.Fatal(err)
	}
	// Free inodes move as others write; the capacity does not.
	if want := fs.Blocks * uint64(fs.Bsize); u.CapacityBytes != want || u.InodesFree == 0 || u.InodesFree > fs.Files {
		t.Errorf("filesystem capacity %d, free inodes %d; statfs says %d bytes, %d inodes", u.CapacityBytes, u.InodesFree, want, fs.Files)
	}
	if err := s.RemoveRootfs(ctx, "container-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RootfsUsage(ctx, "container-1"); !errdefs.IsNotFound(err) {
		t.Errorf("usage of a removed rootfs: %v", err)
	}
	if err := s.RemoveRootfs(ctx, "container-1"); err != nil {
		t.Errorf("second RemoveRootfs: %v", err)
	}
	assertEmpty(t, s)
}

func TestReopenKeepsImages(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("a:1"), fixtures.Busybox(t))
	idx, _ := fixtures.MultiArch(t)
	reg.PushIndex(t, reg.Ref("b:1"), idx)
	root := t.TempDir()
	ctx := context.Background()
	s := newStore(t, root, func(o *Options) { o.Pinned = []string{reg.Ref("b:1")} })
	for _, r := range []string{"a:1", "b:1"} {
		if _, _, err := s.Pull(ctx, reg.Ref(r), nil); err != nil {
			t.Fatal(err)
		}
	}
	before := s.List(ctx)
	imageFs, _, err := s.FsUsage(ctx)
	if err != nil || imageFs.UsedBytes == 0 {
		t.Errorf("image fs usage %+v, %v", imageFs, err)
	}
	if _, err := Open(ctx, s.opts); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid") {
		t.Errorf("second Open of a held root: %v, want ErrLocked naming the holder", err)
	}
	s.Close()

	s2 := newStore(t, root, func(o *Options) { o.Pinned = []string{reg.Ref("b:1")} })
	after := s2.List(ctx)
	if len(after) != 2 {
		t.Fatalf("after reopen: %d images", len(after))
	}
	for i := range before {
		b, a := before[i], after[i]
		if a.ID != b.ID || !slices.Equal(a.RepoTags, b.RepoTags) || !slices.Equal(a.RepoDigests, b.RepoDigests) || a.Size != b.Size || a.Pinned != b.Pinned {
			t.Errorf("image changed across reopen:\n%+v\n%+v", b, a)
		}
	}
	if pinned := after[0].Pinned || after[1].Pinned; !pinned {
		t.Error("pinned image not reported pinned")
	}
}

// corruptBlob serves the blob with digest d with one byte flipped.
func corruptBlob(d string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+d) {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			if len(body) > 100 {
				body[100] ^= 0xff
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	}
}

// stallBlob sends the first KiB of blob d, then nothing until the client
// gives up.
func stallBlob(d string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+d) {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes()[:1024])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		})
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// silentListener returns a loopback address that accepts connections and
// never answers.
func silentListener(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

func TestLayersAreFetchedConcurrently(t *testing.T) {
	var inFlight, peak atomic.Int32
	reg := fixtures.StartRegistry(t, fixtures.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				n := inFlight.Add(1)
				defer inFlight.Add(-1)
				for p := peak.Load(); n > p; p = peak.Load() {
					if peak.CompareAndSwap(p, n) {
						break
					}
				}
				time.Sleep(50 * time.Millisecond) // hold the request so overlap is visible
			}
			next.ServeHTTP(w, r)
		})
	}))
	reg.Push(t, reg.Ref("many:1"), fixtures.ManyLayers(t, 6))
	s := newStore(t, t.TempDir(), func(o *Options) { o.MaxConcurrentDownloads = 3 })
	if _, _, err := s.Pull(context.Background(), reg.Ref("many:1"), nil); err != nil {
		t.Fatal(err)
	}
	if p := peak.Load(); p < 2 || p > 3 {
		t.Errorf("peak concurrent blob fetches = %d, want 2..3 (max_concurrent_downloads = 3)", p)
	}
}

func TestConcurrentPullsOfOneImage(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("many:1"), fixtures.ManyLayers(t, 6))
	reg.Push(t, reg.Ref("many:2"), fixtures.ManyLayers(t, 6))
	s := newStore(t, t.TempDir())
	ctx := context.Background()
	errs := make(chan error, 4)
	ids := make(chan string, 4)
	for _, ref := range []string{"many:1", "many:1", "many:2", "many:2"} {
		go func() {
			img, _, err := s.Pull(ctx, reg.Ref(ref), nil)
			ids <- img.ID
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent pull: %v", err)
		}
	}
	first := <-ids
	for range 3 {
		if id := <-ids; id != first {
			t.Errorf("IDs differ: %s %s", first, id)
		}
	}
	if imgs := s.List(ctx); len(imgs) != 1 || len(imgs[0].RepoTags) != 2 {
		t.Errorf("images = %+v", imgs)
	}
	present, _ := fixtures.ManyLayersExpect(6)
	readRootfs(t, s, first, func(root string) {
		for _, p := range present {
			if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
				t.Errorf("%s missing: %v", p, err)
			}
		}
	})
}

// TestRemoveRootfsCollectsInTheBackground: RemoveRootfs drops the record
// at once (usage is NotFound, the key is free again) and leaves the
// directories of the writable layers to one background collection, which
// Close waits for: nothing of them is left once the store is closed.
func TestRemoveRootfsCollectsInTheBackground(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("busybox:1"), fixtures.Busybox(t))
	root := t.TempDir()
	s := newStore(t, root)
	ctx := context.Background()
	img, _, err := s.Pull(ctx, reg.Ref("busybox:1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	dirs := func() int {
		entries, err := os.ReadDir(filepath.Join(s.SnapshotRoot(), "snapshots"))
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	layers := dirs()
	keys := []string{"c1", "c2", "c3"}
	for _, k := range keys {
		if _, err := s.PrepareRootfs(ctx, k, img.ID); err != nil {
			t.Fatal(err)
		}
	}
	if got := dirs(); got != layers+len(keys) {
		t.Fatalf("%d snapshot directories with %d rootfs, want %d", got, len(keys), layers+len(keys))
	}
	for _, k := range keys {
		if err := s.RemoveRootfs(ctx, k); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RootfsUsage(ctx, k); !errdefs.IsNotFound(err) {
			t.Errorf("usage of removed rootfs %s: %v", k, err)
		}
	}
	if _, err := s.PrepareRootfs(ctx, "c1", img.ID); err != nil {
		t.Fatalf("a removed rootfs's key is not free again: %v", err)
	}
	if err := s.RemoveRootfs(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := dirs(); got != layers {
		t.Errorf("%d snapshot directories after Close, want the image's %d", got, layers)
	}
}

// TestOpenSweepsRecordlessSnapshots: a rootfs whose record went but whose
// background collection never ran (a kill -9 between the two) leaves
// nothing behind once the store is opened again.
func TestOpenSweepsRecordlessSnapshots(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("busybox:1"), fixtures.Busybox(t))
	root := t.TempDir()
	s := newStore(t, root)
	ctx := context.Background()
	img, _, err := s.Pull(ctx, reg.Ref("busybox:1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	dirs := func() int {
		entries, err := os.ReadDir(filepath.Join(s.SnapshotRoot(), "snapshots"))
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	layers := dirs()
	if _, err := s.PrepareRootfs(ctx, "c1", img.ID); err != nil {
		t.Fatal(err)
	}
	// The record goes, the collection does not run: as a kill -9 leaves it.
	if err := s.sn.Remove(s.nsCtx(ctx), "c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := dirs(); got != layers+1 {
		t.Fatalf("%d snapshot directories before the reopen, want %d", got, layers+1)
	}
	s = newStore(t, root)
	if got := dirs(); got != layers {
		t.Errorf("%d snapshot directories after the reopen, want the image's %d", got, layers)
	}
}

// TestIdleAfterTheLastTransfer: Options.Idle is called once when the last
// of overlapping pulls ends, again after a lone failed pull and after an
// import, and never while a transfer is still in progress.
func TestIdleAfterTheLastTransfer(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("busybox:1"), fixtures.Busybox(t))
	reg.Push(t, reg.Ref("many:1"), fixtures.ManyLayers(t, 4))
	var inFlight atomic.Int32
	idle := make(chan int32, 10)
	arrived := make(chan struct{}, 2)
	release := make(chan struct{})
	s := newStore(t, t.TempDir(), func(o *Options) {
		o.Idle = func() { idle <- inFlight.Load() }
		// Both pulls wait, fetched, until the test lets them record.
		o.Failpoint = func(step string) {
			if step == "pullimage:fetched" {
				select {
				case arrived <- struct{}{}:
				default:
				}
				<-release
			}
		}
	})
	ctx := context.Background()
	errs := make(chan error, 2)
	for _, ref := range []string{"busybox:1", "many:1"} {
		inFlight.Add(1)
		go func() {
			_, _, err := s.Pull(ctx, reg.Ref(ref), nil)
			inFlight.Add(-1)
			errs <- err
		}()
	}
	<-arrived
	<-arrived
	select {
	case n := <-idle:
		t.Fatalf("Idle called with %d pulls in progress", n)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	waitIdle := func(what string) {
		t.Helper()
		select {
		case <-idle:
		case <-time.After(10 * time.Second):
			t.Fatalf("no Idle after %s", what)
		}
	}
	waitIdle("two overlapping pulls")
	select {
	case <-idle:
		t.Fatal("Idle called twice for two overlapping pulls")
	case <-time.After(100 * time.Millisecond):
	}

	if _, _, err := s.Pull(ctx, reg.Ref("missing:1"), nil); err == nil {
		t.Fatal("pull of a missing image succeeded")
	}
	waitIdle("a failed pull")

	archive := filepath.Join(t.TempDir(), "busybox.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Export(ctx, f, []string{reg.Ref("busybox:1")}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, []string{archive}, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	waitIdle("an import")
}
