package oci

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestHostDevicesDeviceInfo(t *testing.T) {
	got, err := HostDevices{}.DeviceInfo("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	if got.Type != "c" || got.Major != 1 || got.Minor != 3 {
		t.Errorf("/dev/null: %+v, want c 1:3", got)
	}
	dir := t.TempDir()
	link := filepath.Join(dir, "by-id")
	if err := os.Symlink("/dev/null", link); err != nil {
		t.Fatal(err)
	}
	if got, err := (HostDevices{}).DeviceInfo(link); err != nil || got.Major != 1 || got.Minor != 3 {
		t.Errorf("a symlink to /dev/null: %+v, %v; want its target's node", got, err)
	}
	if got, err := (HostDevices{}).DeviceInfo(dir); err != nil || got.Type != "" {
		t.Errorf("a directory: %+v, %v; want no device type", got, err)
	}
	if _, err := (HostDevices{}).DeviceInfo(filepath.Join(dir, "none")); !os.IsNotExist(err) {
		t.Errorf("a missing path: %v, want not-exist", err)
	}
}

// TestHostDevicesList: device nodes, not symlinks, console, nor the nodes
// of pts, shm, mqueue and fd.
func TestHostDevicesList(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mknod needs root")
	}
	dir := t.TempDir()
	for _, d := range []string{"pts", "shm", "mqueue", "fd", "input"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nodes := []struct {
		path string
		mode uint32
	}{
		{"null", unix.S_IFCHR}, {"loop0", unix.S_IFBLK}, {"input/event0", unix.S_IFCHR}, {"console", unix.S_IFCHR},
		{"pts/0", unix.S_IFCHR}, {"shm/x", unix.S_IFCHR}, {"mqueue/x", unix.S_IFCHR},
	}
	for _, n := range nodes {
		if err := unix.Mknod(filepath.Join(dir, n.path), n.mode|0o600, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("null", filepath.Join(dir, "stdout")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "regular"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := HostDevices{Dir: dir}.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "input/event0"), filepath.Join(dir, "loop0"), filepath.Join(dir, "null")}
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}
