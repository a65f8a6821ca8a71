package nsbox

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// mountTmpfs mounts a tmpfs at dir until the test ends.
func mountTmpfs(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
}

func writeFile(path string) error { return os.WriteFile(path, []byte("x"), 0o644) }

// TestReadOnlyTrees: an "rro" mount handed to a runtime without rro
// becomes an "ro" bind of a tree in which every mount is read-only (the
// source's submount too), the source stays writable, later mounts under
// the source stay out, and releasing the trees leaves no mount and no
// file in the bundle.
func TestReadOnlyTrees(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	src, bundle := filepath.Join(base, "src"), filepath.Join(base, "bundle")
	mountTmpfs(t, src)
	mountTmpfs(t, filepath.Join(src, "sub"))
	file := filepath.Join(base, "file")
	for _, p := range []string{filepath.Join(src, "f"), filepath.Join(src, "sub", "g"), file} {
		if err := writeFile(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	spec := &specs.Spec{Mounts: []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/data", Type: "bind", Source: src, Options: []string{"rbind", "rprivate", "rro"}},
		{Destination: "/plain", Type: "bind", Source: src, Options: []string{"rbind", "rprivate", "ro"}},
		{Destination: "/file", Type: "bind", Source: file, Options: []string{"rbind", "rprivate", "rro"}},
	}}
	if err := makeReadOnlyTrees(spec, bundle); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(bundle, readOnlyTreesDir, "1")
	if m := spec.Mounts[1]; m.Source != tree || !slices.Equal(m.Options, []string{"rbind", "rprivate", "ro"}) {
		t.Errorf("the rro mount became %s %v, want %s [rbind rprivate ro]", m.Source, m.Options, tree)
	}
	if m := spec.Mounts[2]; m.Source != src {
		t.Errorf("a plain ro mount was changed: %+v", m)
	}
	if spec.Mounts[3].Source != filepath.Join(bundle, readOnlyTreesDir, "3") {
		t.Errorf("the rro file mount's source is %s", spec.Mounts[3].Source)
	}
	for _, p := range []string{filepath.Join(tree, "new"), filepath.Join(tree, "sub", "new"), spec.Mounts[3].Source} {
		if err := writeFile(p); !errors.Is(err, unix.EROFS) {
			t.Errorf("write %s in the tree: %v, want EROFS", p, err)
		}
	}
	if err := writeFile(filepath.Join(src, "sub", "still")); err != nil {
		t.Errorf("the source's submount is no longer writable: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tree, "sub", "g")); err != nil {
		t.Errorf("the tree lacks the submount's file: %v", err)
	}
	mountTmpfs(t, filepath.Join(src, "later"))
	if err := writeFile(filepath.Join(src, "later", "h")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tree, "later", "h")); err == nil {
		t.Error("a mount made under the source later shows in the private tree")
	}

	if err := releaseReadOnlyTrees(bundle); err != nil {
		t.Fatal(err)
	}
	testutil.AssertNoMounts(t, bundle)
	if _, err := os.Stat(filepath.Join(bundle, readOnlyTreesDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the trees' directory is left: %v", err)
	}
	for _, p := range []string{filepath.Join(src, "f"), filepath.Join(src, "sub", "g"), file} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the source lost %s: %v", p, err)
		}
	}
	if err := releaseReadOnlyTrees(bundle); err != nil {
		t.Errorf("a second release: %v", err)
	}
}

// TestReadOnlyTreesFailure: a mount whose source is missing fails the
// whole, and the trees made before it are released.
func TestReadOnlyTreesFailure(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	bundle := filepath.Join(base, "bundle")
	if err := os.Mkdir(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	spec := &specs.Spec{Mounts: []specs.Mount{
		{Destination: "/a", Type: "bind", Source: base, Options: []string{"rbind", "rro"}},
		{Destination: "/b", Type: "bind", Source: filepath.Join(base, "missing"), Options: []string{"rbind", "rro"}},
	}}
	if err := makeReadOnlyTrees(spec, bundle); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("makeReadOnlyTrees with a missing source: %v, want ErrNotExist", err)
	}
	testutil.AssertNoMounts(t, bundle)
	if _, err := os.Stat(filepath.Join(bundle, readOnlyTreesDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the trees' directory is left: %v", err)
	}
}
