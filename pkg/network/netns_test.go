package network

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/vishvananda/netns"
)

func TestNetNSLifecycle(t *testing.T) {
	testutil.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "netns")
	p, err := NewNetNS(dir, "pod1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewNetNS(dir, "pod1"); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second NewNetNS = %v, want AlreadyExists", err)
	}
	self, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = self.Close() }()
	var inside string
	if err := WithNetNS(p, func() error {
		h, err := netns.Get()
		if err != nil {
			return err
		}
		defer func() { _ = h.Close() }()
		inside = h.UniqueId()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	pod, err := netns.GetFromPath(p)
	if err != nil {
		t.Fatal(err)
	}
	if inside != pod.UniqueId() || inside == self.UniqueId() {
		t.Errorf("WithNetNS ran in %s; pod is %s, test is %s", inside, pod.UniqueId(), self.UniqueId())
	}
	_ = pod.Close()
	if err := RemoveNetNS(p); err != nil {
		t.Fatal(err)
	}
	if err := RemoveNetNS(p); err != nil {
		t.Errorf("second RemoveNetNS: %v", err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns file still there: %v", err)
	}
	testutil.AssertNoMounts(t, dir)
	if _, err := NewNetNS(dir, "../escape"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("NewNetNS with a bad id = %v", err)
	}
}
