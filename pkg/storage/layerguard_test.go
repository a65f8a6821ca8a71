package storage

import (
	"archive/tar"
	"errors"
	"testing"
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
		{"block device", []entry{{"dev/sda", tar.TypeBlock, ""}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newLayerGuard()
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
