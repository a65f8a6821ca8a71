package vmbox

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/testutil"
	"golang.org/x/sys/unix"
)

// TestBindAndUnbind binds a directory (read-only) and a file into a shared
// directory and removes them again, leaving no mount and no file behind,
// and never touching the sources.
func TestBindAndUnbind(t *testing.T) {
	testutil.RequireRoot(t)
	tmp := t.TempDir()
	shared := filepath.Join(tmp, "shared")
	src := filepath.Join(tmp, "src")
	file := filepath.Join(tmp, "hosts")
	for _, d := range []string{shared, src} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	binds := []Bind{{Source: src, Rel: "c/x/m0", ReadOnly: true}, {Source: file, Rel: "c/x/m1"}}
	if err := bindAll(shared, binds); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unbindTree(filepath.Join(shared, "c")) })
	if b, err := os.ReadFile(filepath.Join(shared, "c/x/m0/keep")); err != nil || string(b) != "x" {
		t.Fatalf("bound dir: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(shared, "c/x/m0/new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into the read-only bind: %v, want EROFS", err)
	}
	if b, err := os.ReadFile(filepath.Join(shared, "c/x/m1")); err != nil || string(b) != "127.0.0.1 localhost\n" {
		t.Fatalf("bound file: %q %v", b, err)
	}
	if err := bindOnce(shared, Bind{Source: src, Rel: "logs"}); err != nil {
		t.Fatal(err)
	}
	if err := bindOnce(shared, Bind{Source: src, Rel: "logs"}); err != nil {
		t.Fatal(err)
	}
	if ms, _ := mountsUnder(filepath.Join(shared, "logs")); len(ms) != 1 {
		t.Errorf("bindOnce twice: mounts %v", ms)
	}
	for _, d := range []string{filepath.Join(shared, "c"), filepath.Join(shared, "logs")} {
		if err := unbindTree(d); err != nil {
			t.Fatal(err)
		}
		if err := unbindTree(d); err != nil {
			t.Fatalf("second unbindTree: %v", err)
		}
	}
	if ms, _ := mountsUnder(tmp); len(ms) != 0 {
		t.Errorf("mounts left: %v", ms)
	}
	if _, err := os.Stat(filepath.Join(src, "keep")); err != nil {
		t.Errorf("source touched: %v", err)
	}
}
