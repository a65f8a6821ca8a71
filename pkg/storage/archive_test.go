package storage

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// exportFixture pulls two images into a store and exports them.
func exportFixture(t *testing.T) (archivePath string, want []Image) {
	t.Helper()
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("busybox:1"), fixtures.Busybox(t))
	reg.Push(t, reg.Ref("many:1"), fixtures.ManyLayers(t, 5))
	src := newStore(t, t.TempDir())
	ctx := context.Background()
	for _, r := range []string{"busybox:1", "many:1"} {
		img, _, err := src.Pull(ctx, reg.Ref(r), nil)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, img)
	}
	archivePath = filepath.Join(t.TempDir(), "images.tar")
	f, err := os.Create(archivePath)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Export(ctx, f, []string{reg.Ref("busybox:1"), want[1].ID}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return archivePath, want
}

func TestExportImportRoundTrip(t *testing.T) {
	archivePath, want := exportFixture(t)
	dst := newStore(t, t.TempDir())
	ctx := context.Background()
	got, err := dst.Import(ctx, []string{archivePath}, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("imported %d images", len(got))
	}
	for _, w := range want {
		g, err := dst.Get(ctx, w.ID)
		if err != nil || !slices.Equal(g.RepoTags, w.RepoTags) || g.ChainID != w.ChainID {
			t.Errorf("imported %+v, %v; want tags %v chain %s", g, err, w.RepoTags, w.ChainID)
		}
	}
	present, absent := fixtures.ManyLayersExpect(5)
	readRootfs(t, dst, want[1].ID, func(root string) {
		for _, p := range present {
			if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
				t.Errorf("%s missing: %v", p, err)
			}
		}
		for _, p := range absent {
			if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
				t.Errorf("%s present", p)
			}
		}
	})
	// Importing again changes nothing.
	if _, err := dst.Import(ctx, []string{archivePath}, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := len(dst.List(ctx)); n != 2 {
		t.Errorf("%d images after a second import", n)
	}
}

func TestImportDockerArchive(t *testing.T) {
	img := fixtures.NonRoot(t, "www-data")
	tag, err := name.NewTag("example.com/app:2")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "docker.tar")
	if err := tarball.WriteToFile(p, tag, img); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, t.TempDir())
	got, err := s.Import(context.Background(), []string{p}, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != configDigest(t, img) || !slices.Equal(got[0].RepoTags, []string{"example.com/app:2"}) {
		t.Errorf("imported %+v", got)
	}
}

func TestImportTagOnlyNameNeedsBaseName(t *testing.T) {
	archivePath, _ := exportFixture(t)
	// Drop the full names, so the OCI layout names its images by tag only
	// ("org.opencontainers.image.ref.name": "1"), as some tools write them.
	tagOnly := rewriteTar(t, archivePath, func(name string, b []byte) []byte {
		if name != "index.json" {
			return b
		}
		return bytes.ReplaceAll(b, []byte(`"io.containerd.image.name"`), []byte(`"x-ignored"`))
	})
	s := newStore(t, t.TempDir())
	ctx := context.Background()
	if _, err := s.Import(ctx, []string{tagOnly}, ImportOptions{}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "base name") {
		t.Fatalf("tag-only without base name: %v", err)
	}
	assertEmpty(t, s)
	if _, err := s.Import(ctx, []string{tagOnly}, ImportOptions{BaseName: "example.com/app"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "example.com/app:1"); err != nil {
		t.Errorf("base name + tag: %v", err)
	}
}

func TestImportCorruptOrTruncatedChangesNothing(t *testing.T) {
	archivePath, want := exportFixture(t)
	blob := "blobs/sha256/" + strings.TrimPrefix(want[0].Manifest.Digest.String(), "sha256:")
	corrupt := rewriteTar(t, archivePath, func(name string, b []byte) []byte {
		if strings.HasPrefix(name, "blobs/") && name != blob && len(b) > 300 {
			b = bytes.Clone(b)
			b[200] ^= 0xff
		}
		return b
	})
	full, err := os.ReadFile(archivePath)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(t.TempDir(), "truncated.tar")
	if err := os.WriteFile(truncated, full[:len(full)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.tar")
	if err := os.WriteFile(garbage, []byte("this is not a tar archive"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, t.TempDir())
	ctx := context.Background()
	for _, tt := range []struct {
		name  string
		paths []string
		is    func(error) bool
	}{
		{"corrupt blob", []string{corrupt}, errdefs.IsDataLoss},
		{"truncated", []string{truncated}, errdefs.IsInvalidArgument},
		{"not an archive", []string{garbage}, errdefs.IsInvalidArgument},
		{"good then corrupt", []string{archivePath, corrupt}, errdefs.IsDataLoss},
		{"missing file", []string{filepath.Join(t.TempDir(), "none.tar")}, func(err error) bool { return errors.Is(err, os.ErrNotExist) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Import(ctx, tt.paths, ImportOptions{})
			if !tt.is(err) {
				t.Fatalf("err = %v", err)
			}
			assertEmpty(t, s)
		})
	}
}

// rewriteTar copies the tar at path, passing each regular file's content
// through edit, and returns the new file's path.
func rewriteTar(t *testing.T, path string, edit func(name string, b []byte) []byte) string {
	t.Helper()
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	outPath := filepath.Join(t.TempDir(), "edited.tar")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	tr, tw := tar.NewReader(in), tar.NewWriter(out)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b = edit(h.Name, b)
			h.Size = int64(len(b))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return outPath
}

func TestPreloadAndPinned(t *testing.T) {
	archivePath, want := exportFixture(t)
	dir := t.TempDir()
	b, err := os.ReadFile(archivePath)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "10-images.tar"), b, 0o644)
	os.WriteFile(filepath.Join(dir, "20-broken.tar"), b[:len(b)/3], 0o644)
	os.WriteFile(filepath.Join(dir, "README"), []byte("not an archive"), 0o644)
	root := t.TempDir()
	s := newStore(t, root, func(o *Options) { o.Pinned = want[0].RepoTags })
	ctx := context.Background()
	err = s.Preload(ctx, dir)
	if err == nil || !strings.Contains(err.Error(), "20-broken.tar") {
		t.Errorf("preload error = %v, want it to name the broken archive", err)
	}
	if n := len(s.List(ctx)); n != 2 {
		t.Fatalf("%d images preloaded, want 2 (the broken archive must not stop the good one)", n)
	}
	pinned, err := s.Get(ctx, want[0].ID)
	if err != nil || !pinned.Pinned {
		t.Fatalf("pinned image: %+v, %v", pinned, err)
	}
	if err := s.Remove(ctx, want[0].ID, false); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "pinned") {
		t.Errorf("removing a pinned image without force: %v", err)
	}
	// Imported once: removing an image and preloading again does not bring
	// it back, unless the archive changes.
	if err := s.Remove(ctx, want[1].ID, false); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "20-broken.tar"))
	if err := s.Preload(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, want[1].ID); !errdefs.IsNotFound(err) {
		t.Errorf("an unchanged archive was imported again: %v", err)
	}
	if err := s.Remove(ctx, want[0].ID, true); err != nil {
		t.Errorf("forced removal of a pinned image: %v", err)
	}
	if err := s.Preload(ctx, filepath.Join(dir, "missing")); err != nil {
		t.Errorf("missing preload dir: %v", err)
	}
}
