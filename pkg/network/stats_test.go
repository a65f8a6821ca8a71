package network

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/vishvananda/netlink"
)

// Packets sent over a namespace's loopback show in its counters, read
// from outside the namespace.
func TestLinkStats(t *testing.T) {
	testutil.RequireRoot(t)
	p, err := NewNetNS(filepath.Join(t.TempDir(), "netns"), "stats")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := RemoveNetNS(p); err != nil {
			t.Error(err)
		}
	}()
	err = WithNetNS(p, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		c, err := net.DialTimeout("udp", "127.0.0.1:9", time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(make([]byte, 1000))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := LinkStats(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Name != "lo" || st[0].TxPackets == 0 || st[0].TxBytes < 1000 || st[0].RxBytes != st[0].TxBytes {
		t.Errorf("stats = %+v", st)
	}
	if _, err := LinkStats(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("stats of a missing namespace")
	}
}
