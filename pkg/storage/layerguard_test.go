package storage

import (
	"archive/tar"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestLayerGuard(t *testing.T) {
	type entry struct {
		name string
		typ  byte
		link string
	}
	tests := []struct {
		name    string
		entries []entry
		wantErr bool
	}{
		{"plain tree", []entry{{"bin", tar.TypeDir, ""}, {"bin/busybox", tar.TypeReg, ""}, {"bin/sh", tar.TypeSymlink, "busybox"}, {"bin/ls", tar.TypeLink, "bin/busybox"}}, false},
		{"absolute symlink target is fine", []entry{{"etc/mtab", tar.TypeSymlink, "/proc/mounts"}}, false},
		{"relative climbing symlink target is fine", []entry{{"a/b", tar.TypeSymlink, "../../../../etc"}}, false},
		{"whiteouts", []entry{{"data/.wh.old", tar.TypeReg, ""}, {"opq/.wh..wh..opq", tar.TypeReg, ""}}, false},
		{"fifo", []entry{{"run/fifo", tar.TypeFifo, ""}}, false},
		{"symlink replaced by dir", []entry{{"x", tar.TypeSymlink, "/tmp"}, {"x", tar.TypeDir, ""}, {"x/y", tar.TypeReg, ""}}, false},
		{"absolute name", []entry{{"/etc/passwd", tar.TypeReg, ""}}, true},
		{"dotdot", []entry{{"../../etc/passwd", tar.TypeReg, ""}}, true},
		{"dotdot whiteout", []entry{{"../.wh.victim", tar.TypeReg, ""}}, true},
		{"hardlink out", []entry{{"p", tar.TypeLink, "../../etc/passwd"}}, true},
		{"hardlink absolute", []entry{{"p", tar.TypeLink, "/etc/passwd"}}, true},
		{"write through own symlink", []entry{{"evil", tar.TypeSymlink, "/tmp"}, {"evil/x", tar.TypeReg, ""}}, true},
		{"write deep through own symlink", []entry{{"a/evil", tar.TypeSymlink, "../../.."}, {"a/evil/b/c", tar.TypeReg, ""}}, true},
		{"hardlink through own symlink", []entry{{"evil", tar.TypeSymlink, "/etc"}, {"p", tar.TypeLink, "evil/passwd"}}, true},
		{"char device", []entry{{"dev/mem", tar.TypeChar, ""}}, true},
		{"whiteout of ..", []entry{{"d/.wh...", tar.TypeReg, ""}}, true},
		{"whiteout of .", []entry{{"d/.wh..", tar.TypeReg, ""}}, true},
		{"whiteout of nothing", []entry{{".wh.", tar.TypeReg, ""}}, true},
		{"aufs meta entry is a plain whiteout", []entry{{"d/.wh..wh.plnk", tar.TypeReg, ""}}, false},
		{"block device", []entry{{"dev/sda", tar.TypeBlock, ""}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newLayerGuard("", nil)
			var err error
			for _, e := range tt.entries {
				if _, err = g.check(&tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link}); err != nil {
					break
				}
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrUnsafeLayer) {
				t.Errorf("error %v is not ErrUnsafeLayer", err)
			}
		})
	}
}

// lowerOf finds a path as overlayfs shows the lower layers: whiteouts and
// opaque directories hide what lies below them, a file shadows a directory
// of a lower layer, and symlinks are never followed.
func TestLowerOf(t *testing.T) {
	dir := t.TempDir()
	top, mid, bottom := filepath.Join(dir, "top"), filepath.Join(dir, "mid"), filepath.Join(dir, "bottom")
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"bottom/a/f", "bottom/gone/f", "bottom/opq/f", "bottom/shadow/f", "mid/a/g", "top/opq/h", "bottom/viaLink/f"} {
		mk(filepath.Join(dir, p))
	}
	for _, d := range []string{"top/gone", "top/shadow"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, d)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mknod(filepath.Join(top, "gone"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	mk(filepath.Join(top, "shadow"))
	if err := unix.Setxattr(filepath.Join(top, "opq"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(top, "link")); err != nil {
		t.Fatal(err)
	}
	lowers := []string{top, mid, bottom}
	for target, want := range map[string]string{
		"a/f": bottom, "a/g": mid, "opq/h": top, "opq/f": "", "gone/f": "", "shadow/f": "",
		"link/passwd": "", "missing": "", "viaLink/f": bottom,
	} {
		got, err := lowerOf(lowers, target)
		if err != nil || got != want {
			t.Errorf("lowerOf(%q) = %q, %v; want %q", target, got, err, want)
		}
	}
}
