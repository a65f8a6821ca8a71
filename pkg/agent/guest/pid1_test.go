package guest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// TestLeaveRootfs runs the root move in a mount namespace and chroot of a
// thread of its own, on a tmpfs standing in for the initramfs (the real
// rootfs, which pivot_root refuses, exists only in a booted guest).
func TestLeaveRootfs(t *testing.T) {
	root := t.TempDir()
	inNewNamespaces(t, unix.CLONE_NEWNS, func() {
		if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=1m"); err != nil {
			t.Error(err)
			return
		}
		if err := os.WriteFile(filepath.Join(root, "marker"), []byte("x"), 0o644); err != nil {
			t.Error(err)
			return
		}
		if err := unix.Chroot(root); err != nil {
			t.Error(err)
			return
		}
		if err := leaveRootfs(); err != nil {
			t.Errorf("leaveRootfs: %v", err)
			return
		}
		if b, err := os.ReadFile("/marker"); err != nil || string(b) != "x" {
			t.Errorf("the root's files after the move: %q, %v", b, err)
		}
		if _, err := os.Stat("/.cradle-root"); !os.IsNotExist(err) {
			t.Errorf("the bind mount's directory is left: %v", err)
		}
	})
}

func TestEnableControllers(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"cgroup.controllers": "cpuset cpu io memory hugetlb pids\n", "cgroup.subtree_control": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := enableControllers(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"cpuset", "cpu", "io", "memory", "hugetlb", "pids"}, got); diff != "" {
		t.Error(diff)
	}
	if _, err := enableControllers(t.TempDir()); err == nil {
		t.Error("no cgroup.controllers: no error")
	}
}
