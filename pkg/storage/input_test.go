package storage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// tarOf writes hdrs (a regular file's body is its Linkname-free Size bytes
// of body[name]) into a tar stream.
func tarOf(t testing.TB, body map[string]string, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		b := body[h.Name]
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(b))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imageOf is an image of this host's platform with layers (bottom first).
func imageOf(t testing.TB, layers ...v1.Layer) v1.Image {
	t.Helper()
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	base, err := mutate.ConfigFile(base, &v1.ConfigFile{OS: "linux", Architecture: runtime.GOARCH, RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// rawLayer is a layer blob of arbitrary bytes (its digest is right, its
// content need not be a gzipped tar); diffID is what the config claims.
type rawLayer struct {
	blob   []byte
	diffID v1.Hash
}

func sha(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

func (l rawLayer) Digest() (v1.Hash, error) { return sha(l.blob), nil }
func (l rawLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l rawLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.blob)), nil
}
func (l rawLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.blob)), nil
}
func (l rawLayer) Size() (int64, error)                { return int64(len(l.blob)), nil }
func (l rawLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A layer that hard-links a file of an earlier layer is applied as
// overlayfs would (the file is copied up, then linked), as containerd does
// (issue 14, item 8: link .../fs/data/a .../fs/b: no such file or directory).
func TestPullHardLinkToAnEarlierLayer(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	lower := tarOf(t, map[string]string{"data/a": "from layer one"},
		&tar.Header{Typeflag: tar.TypeDir, Name: "data/", Mode: 0o750, Uid: 7, Gid: 8},
		&tar.Header{Typeflag: tar.TypeReg, Name: "data/a", Mode: 0o4751, Uid: 7, Gid: 8})
	// A link entry carries its inode's metadata, as tar writers make it
	// (and containerd applies it to the inode).
	upper := tarOf(t, nil,
		&tar.Header{Typeflag: tar.TypeLink, Name: "b", Linkname: "data/a", Mode: 0o4751, Uid: 7, Gid: 8},
		&tar.Header{Typeflag: tar.TypeLink, Name: "data/c", Linkname: "data/a", Mode: 0o4751, Uid: 7, Gid: 8})
	reg.Push(t, reg.Ref("hardlink:1"), imageOf(t, fixtures.LayerFromTar(t, lower), fixtures.LayerFromTar(t, upper)))
	s := newStore(t, t.TempDir())
	img, _, err := s.Pull(context.Background(), reg.Ref("hardlink:1"), nil)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	readRootfs(t, s, img.ID, func(root string) {
		var inos []uint64
		for _, p := range []string{"data/a", "b", "data/c"} {
			b, err := os.ReadFile(filepath.Join(root, p))
			if err != nil || string(b) != "from layer one" {
				t.Errorf("%s = %q, %v", p, b, err)
				continue
			}
			fi, _ := os.Stat(filepath.Join(root, p))
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode().Perm() != 0o751 || fi.Mode()&os.ModeSetuid == 0 || st.Uid != 7 || st.Gid != 8 {
				t.Errorf("%s: mode %v owner %d:%d, want -rwsr-x--x 7:8", p, fi.Mode(), st.Uid, st.Gid)
			}
			inos = append(inos, st.Ino)
		}
		if len(inos) == 3 && (inos[0] != inos[1] || inos[1] != inos[2]) {
			t.Errorf("inodes %v: want one file under three names", inos)
		}
		if fi, err := os.Stat(filepath.Join(root, "data")); err != nil || fi.Mode().Perm() != 0o750 {
			t.Errorf("data: %v, %v", fi, err)
		}
	})
}

// A hard link whose target no layer holds fails as bad input.
func TestPullHardLinkToNothing(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	lower := tarOf(t, map[string]string{"a": "x"}, &tar.Header{Typeflag: tar.TypeReg, Name: "a"})
	upper := tarOf(t, nil, &tar.Header{Typeflag: tar.TypeLink, Name: "b", Linkname: "missing"})
	reg.Push(t, reg.Ref("hardlink:2"), imageOf(t, fixtures.LayerFromTar(t, lower), fixtures.LayerFromTar(t, upper)))
	s := newStore(t, t.TempDir())
	_, _, err := s.Pull(context.Background(), reg.Ref("hardlink:2"), nil)
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("pull error = %v, want InvalidArgument", err)
	}
	assertEmpty(t, s)
}

// Layer blobs whose bytes match their digest but are not what a layer
// holds are the image's fault, DataLoss, never "registry unreachable"
// (issue 14, item 8).
func TestPullCorruptLayerContent(t *testing.T) {
	good := tarOf(t, map[string]string{"a": "some content to compress"}, &tar.Header{Typeflag: tar.TypeReg, Name: "a"})
	zgood := gz(t, good)
	for name, blob := range map[string][]byte{
		"not gzip":        []byte("this is not a gzip stream, nor a tar"),
		"truncated gzip":  zgood[:len(zgood)/2],
		"gzip of garbage": gz(t, bytes.Repeat([]byte("garbage!"), 200)),
		"bad gzip checksum": func() []byte {
			b := bytes.Clone(zgood)
			b[len(b)-6] ^= 0xff // CRC32 trailer
			return b
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			reg := fixtures.StartRegistry(t)
			reg.Push(t, reg.Ref("corrupt:1"), imageOf(t, rawLayer{blob: blob, diffID: sha([]byte("not the diff id"))}))
			s := newStore(t, t.TempDir())
			_, _, err := s.Pull(context.Background(), reg.Ref("corrupt:1"), nil)
			if !errdefs.IsDataLoss(err) {
				t.Fatalf("pull error = %v, want DataLoss", err)
			}
			assertEmpty(t, s)
		})
	}
}

// A layer the filesystem refuses (an entry below a regular file: ENOTDIR)
// is not "registry unreachable": an errno is a net.Error too, and was read
// as one (issue 14, item 8).
func TestPullLayerErrnoIsNotUnavailable(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	bad := tarOf(t, map[string]string{"a": "x", "a/b": "y"},
		&tar.Header{Typeflag: tar.TypeReg, Name: "a"}, &tar.Header{Typeflag: tar.TypeReg, Name: "a/b"})
	reg.Push(t, reg.Ref("enotdir:1"), imageOf(t, fixtures.LayerFromTar(t, bad)))
	s := newStore(t, t.TempDir())
	_, _, err := s.Pull(context.Background(), reg.Ref("enotdir:1"), nil)
	if err == nil || errdefs.IsUnavailable(err) {
		t.Fatalf("pull error = %v, want an error that does not blame the registry", err)
	}
	assertEmpty(t, s)
}

// A whiteout of "." or ".." (or of nothing) is bad input; an opaque
// whiteout (.wh..wh..opq) is legal (issue 14, item 8: Internal before).
func TestPullWhiteoutNames(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	lower := tarOf(t, map[string]string{"d/x": "x"},
		&tar.Header{Typeflag: tar.TypeDir, Name: "d/", Mode: 0o755},
		&tar.Header{Typeflag: tar.TypeReg, Name: "d/x"})
	s := newStore(t, t.TempDir())
	for _, tc := range []struct {
		entry   string
		ok      bool
		hidesDX bool // d/x is gone (overlayfs ignores an opaque root)
	}{
		{"d/.wh..wh..opq", true, true},
		{".wh..wh..opq", true, false},
		{"d/.wh.x", true, true},
		{"d/.wh..", false, false},
		{"d/.wh...", false, false},
		{".wh..", false, false},
		{"d/.wh.", false, false},
	} {
		t.Run(tc.entry, func(t *testing.T) {
			upper := tarOf(t, nil, &tar.Header{Typeflag: tar.TypeReg, Name: tc.entry})
			ref := reg.Ref("whiteout:" + hex.EncodeToString([]byte(tc.entry)))
			reg.Push(t, ref, imageOf(t, fixtures.LayerFromTar(t, lower), fixtures.LayerFromTar(t, upper)))
			img, _, err := s.Pull(context.Background(), ref, nil)
			if tc.ok {
				if err != nil {
					t.Fatalf("pull: %v", err)
				}
				readRootfs(t, s, img.ID, func(root string) {
					if _, err := os.Lstat(filepath.Join(root, "d", "x")); (err == nil) == tc.hidesDX {
						t.Errorf("d/x present = %v, want %v", err == nil, !tc.hidesDX)
					}
				})
				if err := s.Remove(context.Background(), img.ID, false); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errdefs.IsInvalidArgument(err) || !errors.Is(err, ErrUnsafeLayer) {
				t.Fatalf("pull error = %v, want an unsafe-layer InvalidArgument", err)
			}
			assertEmpty(t, s)
		})
	}
}
