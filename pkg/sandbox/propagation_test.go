package sandbox

import (
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"golang.org/x/sys/unix"
)

func TestCheckPropagation(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	shared, slave, private := filepath.Join(base, "shared"), filepath.Join(base, "slave"), filepath.Join(base, "private")
	mount := func(src, dst string, flags uintptr) {
		t.Helper()
		if err := unix.Mount(src, dst, "", flags, ""); err != nil {
			t.Fatalf("mount %s: %v", dst, err)
		}
	}
	if err := unix.Mount("tmpfs", base, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(base, unix.MNT_DETACH) })
	mount("", base, unix.MS_PRIVATE)
	for _, d := range []string{shared, slave, private} {
		if err := unix.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mount(shared, shared, unix.MS_BIND)
	mount("", shared, unix.MS_SHARED)
	mount(shared, slave, unix.MS_BIND)
	mount("", slave, unix.MS_SLAVE)
	mount(private, private, unix.MS_BIND)
	mount("", private, unix.MS_PRIVATE)
	bi, h2c := ctrconfig.PropagationBidirectional, ctrconfig.PropagationHostToContainer
	for _, tt := range []struct {
		src  string
		p    ctrconfig.Propagation
		fail bool
	}{
		{shared, bi, false}, {shared, h2c, false},
		{slave, bi, true}, {slave, h2c, false},
		{private, bi, true}, {private, h2c, true},
		{private, ctrconfig.PropagationPrivate, false},
	} {
		err := checkPropagation([]ctrconfig.Mount{{ContainerPath: "/m", HostPath: tt.src, Propagation: tt.p}})
		if tt.fail != (err != nil) || (err != nil && !errdefs.IsFailedPrecondition(err)) {
			t.Errorf("%s with %v: %v", filepath.Base(tt.src), tt.p, err)
		}
	}
}
