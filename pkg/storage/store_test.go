package storage

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

type storeOpt func(*Options)

func newStore(t testing.TB, root string, opts ...storeOpt) *Store {
	t.Helper()
	testutil.RequireRoot(t)
	o := Options{
		Root:                   root,
		RegistryConfigDir:      filepath.Join(root, "certs.d"),
		MaxConcurrentDownloads: 3,
		DialTimeout:            5 * time.Second,
		ResponseHeaderTimeout:  10 * time.Second,
		PullProgressTimeout:    30 * time.Second,
	}
	for _, f := range opts {
		f(&o)
	}
	s, err := Open(context.Background(), o)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		s.Close()
		testutil.AssertNoMounts(t, root)
	})
	return s
}

func configDigest(t testing.TB, img v1.Image) string {
	t.Helper()
	d, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func manifestDigest(t testing.TB, img interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// readRootfs prepares a throwaway rootfs of image and reads files from it.
func readRootfs(t *testing.T, s *Store, image string, fn func(root string)) {
	t.Helper()
	ctx := context.Background()
	key := "read-" + strings.ReplaceAll(t.Name(), "/", "-")
	mounts, err := s.PrepareRootfs(ctx, key, image)
	if err != nil {
		t.Fatalf("prepare rootfs: %v", err)
	}
	defer func() {
		if err := s.RemoveRootfs(ctx, key); err != nil {
			t.Errorf("remove rootfs: %v", err)
		}
	}()
	if err := mount.WithReadonlyTempMount(ctx, mounts, func(root string) error { fn(root); return nil }); err != nil {
		t.Fatalf("mount rootfs: %v", err)
	}
}

// assertEmpty checks that the store holds no image, content, snapshot or
// lease: what a failed pull must leave.
func assertEmpty(t *testing.T, s *Store) {
	s.waitGarbage()
	t.Helper()
	ctx := s.nsCtx(context.Background())
	if imgs := s.List(ctx); len(imgs) != 0 {
		t.Errorf("images left: %v", imgs)
	}
	var blobs []string
	if err := s.content.Walk(ctx, func(i content.Info) error { blobs = append(blobs, i.Digest.String()); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(blobs) != 0 {
		t.Errorf("content left: %v", blobs)
	}
	if st, err := s.content.ListStatuses(ctx); err != nil || len(st) != 0 {
		t.Errorf("ingests left: %v %v", st, err)
	}
	var snaps []string
	if err := s.sn.Walk(ctx, func(_ context.Context, i snapshots.Info) error { snaps = append(snaps, i.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 0 {
		t.Errorf("snapshots left: %v", snaps)
	}
	dirs, _ := os.ReadDir(filepath.Join(s.SnapshotRoot(), "snapshots"))
	if len(dirs) != 0 {
		t.Errorf("snapshot directories left: %d", len(dirs))
	}
	if ls, err := s.leases.List(ctx); err != nil || len(ls) != 0 {
		t.Errorf("leases left: %v %v", ls, err)
	}
}

func TestMain(m *testing.M) {
	quietContainerdLogs()
	os.Exit(m.Run())
}

func TestPullByTagAndDigest(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	img := fixtures.Busybox(t)
	reg.Push(t, reg.Ref("busybox:1"), img)
	s := newStore(t, t.TempDir())
	ctx := context.Background()

	got, stats, err := s.Pull(ctx, reg.Ref("busybox:1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != configDigest(t, img) {
		t.Errorf("ID = %s, want config digest %s", got.ID, configDigest(t, img))
	}
	wantDigest := reg.Ref("busybox@" + manifestDigest(t, img))
	if !slices.Equal(got.RepoTags, []string{reg.Ref("busybox:1")}) || !slices.Equal(got.RepoDigests, []string{wantDigest}) {
		t.Errorf("tags %v digests %v", got.RepoTags, got.RepoDigests)
	}
	if stats.Bytes == 0 || got.Size == 0 {
		t.Errorf("stats %+v size %d", stats, got.Size)
	}

	byDigest, _, err := s.Pull(ctx, wantDigest, nil)
	if err != nil || byDigest.ID != got.ID {
		t.Fatalf("pull by digest: %v, %v", byDigest.ID, err)
	}
	for _, ref := range []string{got.ID, strings.TrimPrefix(got.ID, "sha256:")[:12], reg.Ref("busybox:1"), wantDigest} {
		if g, err := s.Get(ctx, ref); err != nil || g.ID != got.ID {
			t.Errorf("Get(%q) = %v, %v", ref, g.ID, err)
		}
	}
	readRootfs(t, s, got.ID, func(root string) {
		if fi, err := os.Stat(filepath.Join(root, "bin/busybox")); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("bin/busybox in rootfs: %v %v", fi, err)
		}
	})
}

func TestPullDockerSchema2(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	img := fixtures.DockerSchema2(t)
	reg.Push(t, reg.Ref("docker:1"), img)
	s := newStore(t, t.TempDir())
	got, _, err := s.Pull(context.Background(), reg.Ref("docker:1"), nil)
	if err != nil || got.ID != configDigest(t, img) {
		t.Fatalf("pull = %v, %v", got.ID, err)
	}
}

func TestPullMultiArchResolvesHostPlatform(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	idx, amd64 := fixtures.MultiArch(t)
	reg.PushIndex(t, reg.Ref("multi:1"), idx)
	s := newStore(t, t.TempDir())
	got, _, err := s.Pull(context.Background(), reg.Ref("multi:1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != configDigest(t, amd64) {
		t.Errorf("ID = %s, want the linux/amd64 config %s", got.ID, configDigest(t, amd64))
	}
	if want := reg.Ref("multi@" + manifestDigest(t, idx)); !slices.Equal(got.RepoDigests, []string{want}) {
		t.Errorf("repo digests = %v, want the index digest %s", got.RepoDigests, want)
	}
	readRootfs(t, s, got.ID, func(root string) {
		b, err := os.ReadFile(filepath.Join(root, "etc/arch"))
		if err != nil || strings.TrimSpace(string(b)) != "amd64" {
			t.Errorf("etc/arch = %q, %v", b, err)
		}
	})
	// Only the host's platform is fetched.
	manifest, err := amd64.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	blobs := 0
	ctx := s.nsCtx(context.Background())
	s.content.Walk(ctx, func(content.Info) error { blobs++; return nil })
	if want := 1 + 1 + 1 + len(manifest.Layers); blobs != want {
		t.Errorf("content holds %d blobs, want %d (index, manifest, config, layers)", blobs, want)
	}
}

func TestPullManyLayersAppliesWhiteouts(t *testing.T) {
	const n = 8
	reg := fixtures.StartRegistry(t)
	img := fixtures.ManyLayers(t, n)
	reg.Push(t, reg.Ref("many:1"), img)
	s := newStore(t, t.TempDir())
	got, _, err := s.Pull(context.Background(), reg.Ref("many:1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	present, absent := fixtures.ManyLayersExpect(n)
	readRootfs(t, s, got.ID, func(root string) {
		for _, p := range present {
			if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
				t.Errorf("%s missing: %v", p, err)
			}
		}
		for _, p := range absent {
			if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
				t.Errorf("%s present, want it whited out", p)
			}
		}
	})
}

func TestPullHostileLayerFailsAndLeavesNothing(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	s := newStore(t, t.TempDir())
	for _, kind := range fixtures.HostileKinds() {
		t.Run(string(kind), func(t *testing.T) {
			reg.Push(t, reg.Ref("hostile:"+string(kind)), fixtures.Hostile(t, kind))
			_, _, err := s.Pull(context.Background(), reg.Ref("hostile:"+string(kind)), nil)
			if !errors.Is(err, ErrUnsafeLayer) || !errdefs.IsInvalidArgument(err) {
				t.Fatalf("pull error = %v, want an unsafe-layer InvalidArgument", err)
			}
			for _, p := range fixtures.HostileEscapeTargets(kind) {
				if _, err := os.Lstat(p); err == nil {
					os.Remove(p)
					t.Errorf("layer wrote %s outside its rootfs", p)
				}
			}
			assertEmpty(t, s)
		})
	}
}

func TestPullCorruptBlobStoresNothing(t *testing.T) {
	img := fixtures.Busybox(t)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	ld, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	reg := fixtures.StartRegistry(t, fixtures.WithMiddleware(corruptBlob(ld.String())))
	reg.Push(t, reg.Ref("corrupt:1"), img)
	s := newStore(t, t.TempDir())
	_, _, err = s.Pull(context.Background(), reg.Ref("corrupt:1"), nil)
	if !errdefs.IsDataLoss(err) || !strings.Contains(err.Error(), ld.String()) {
		t.Fatalf("pull error = %v, want DataLoss naming %s", err, ld)
	}
	assertEmpty(t, s)
}

func TestPullAuth(t *testing.T) {
	reg := fixtures.StartRegistry(t, fixtures.WithBasicAuth("alice", "s3cret-pw"))
	reg.Push(t, reg.Ref("private:1"), fixtures.Busybox(t))
	var logs bytes.Buffer
	s := newStore(t, t.TempDir(), func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx := context.Background()
	ref := reg.Ref("private:1")

	if _, _, err := s.Pull(ctx, ref, nil); !errdefs.IsUnauthorized(err) {
		t.Errorf("no credentials: err = %v, want Unauthenticated", err)
	}
	if _, _, err := s.Pull(ctx, ref, &Auth{Username: "alice", Password: "wrong", ServerAddress: reg.Addr}); !errdefs.IsUnauthorized(err) {
		t.Errorf("wrong password: err = %v, want Unauthenticated", err)
	}
	if _, _, err := s.Pull(ctx, ref, &Auth{Username: "alice", Password: "s3cret-pw", ServerAddress: "other.example:5000"}); !errdefs.IsUnauthorized(err) {
		t.Errorf("credential for another registry: err = %v, want Unauthenticated", err)
	}
	assertEmpty(t, s)
	if _, _, err := s.Pull(ctx, ref, &Auth{Username: "alice", Password: "s3cret-pw"}); err != nil {
		t.Errorf("username/password: %v", err)
	}
	if err := s.Remove(ctx, ref, false); err != nil {
		t.Fatal(err)
	}
	// base64("alice:s3cret-pw")
	if _, _, err := s.Pull(ctx, ref, &Auth{Auth: "YWxpY2U6czNjcmV0LXB3", ServerAddress: "http://" + reg.Addr + "/v2/"}); err != nil {
		t.Errorf("auth field: %v", err)
	}
	if strings.Contains(logs.String(), "s3cret") || strings.Contains(logs.String(), "YWxpY2U6") {
		t.Errorf("a credential reached the log:\n%s", logs.String())
	}
}

func TestPullBadInput(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	s := newStore(t, t.TempDir(), func(o *Options) {
		o.DialTimeout, o.ResponseHeaderTimeout = time.Second, time.Second
	})
	ctx := context.Background()
	refused := closedPort(t)
	silent := silentListener(t)
	tests := []struct {
		name    string
		ref     string
		is      func(error) bool
		mention string
	}{
		{"malformed reference", "Busy Box:latest", errdefs.IsInvalidArgument, "Busy Box"},
		{"malformed digest", reg.Ref("busybox@sha256:abc"), errdefs.IsInvalidArgument, "sha256:abc"},
		{"unknown repository", reg.Ref("nothing:here"), errdefs.IsNotFound, reg.Addr},
		{"unknown tag", reg.Ref("busybox:none"), errdefs.IsNotFound, reg.Addr},
		{"connection refused", refused + "/busybox:1", errdefs.IsUnavailable, refused},
		{"registry never answers", silent + "/busybox:1", errdefs.IsUnavailable, silent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, _, err := s.Pull(ctx, tt.ref, nil)
			// A bound on correctness, not a benchmark: with 1s dial and
			// header timeouts, a dead registry must fail in seconds.
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("pull took %s against 1s timeouts", d)
			}
			if !tt.is(err) || !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("err = %v; want its class and a mention of %q", err, tt.mention)
			}
		})
	}
	assertEmpty(t, s)
}

func TestStalledPullIsCancelled(t *testing.T) {
	img := fixtures.Busybox(t)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	reg := fixtures.StartRegistry(t, fixtures.WithMiddleware(stallBlob(ld.String())))
	reg.Push(t, reg.Ref("stall:1"), img)
	s := newStore(t, t.TempDir(), func(o *Options) { o.PullProgressTimeout = time.Second })
	_, _, err := s.Pull(context.Background(), reg.Ref("stall:1"), nil)
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "no progress") {
		t.Fatalf("err = %v, want Unavailable: no progress", err)
	}
	assertEmpty(t, s)
}

func TestMirrorFromHostsToml(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("library/busybox:1"), fixtures.Busybox(t))
	root := t.TempDir()
	dir := filepath.Join(root, "certs.d", "registry.example.invalid")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	hosts := "server = \"http://" + reg.Addr + "\"\n[host.\"http://" + reg.Addr + "\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, root)
	got, _, err := s.Pull(context.Background(), "registry.example.invalid/library/busybox:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.RepoTags, []string{"registry.example.invalid/library/busybox:1"}) {
		t.Errorf("tags = %v: the image keeps the name it was pulled by", got.RepoTags)
	}
}

// A pull longer than a tick reports its progress while it runs, and never
// after it returned.
func TestPullWithProgressReports(t *testing.T) {
	reg := fixtures.StartRegistry(t, fixtures.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				time.Sleep(1200 * time.Millisecond)
			}
			next.ServeHTTP(w, r)
		})
	}))
	reg.Push(t, reg.Ref("slow:1"), fixtures.Busybox(t))
	s := newStore(t, t.TempDir(), func(o *Options) { o.PullProgressTimeout = 4 * time.Second })
	var mu sync.Mutex
	var reports []PullStats
	returned := false
	_, stats, err := s.PullWithProgress(context.Background(), reg.Ref("slow:1"), nil, func(p PullStats) {
		mu.Lock()
		defer mu.Unlock()
		if returned {
			t.Error("progress reported after the pull returned")
		}
		reports = append(reports, p)
	})
	mu.Lock()
	returned = true
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) == 0 {
		t.Fatal("no progress reported by a pull of more than a second")
	}
	for i, r := range reports {
		if r.Bytes > stats.Bytes || (i > 0 && r.Bytes < reports[i-1].Bytes) || r.Total <= 0 {
			t.Errorf("report %d = %+v (final %+v)", i, r, stats)
		}
	}
}
