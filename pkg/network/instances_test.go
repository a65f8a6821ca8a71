package network

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// second is another instance in the same fake host: its own root, state,
// bridge and subnet.
func (e *testEnv) second() (*Manager, func() *Manager) {
	e.t.Helper()
	cfg := e.cfg
	cfg.Bridge, cfg.Subnet = "crtest1", "10.124.0.0/24"
	root, state := filepath.Join(e.dir, "root2"), filepath.Join(e.dir, "state2")
	start := func() *Manager {
		e.t.Helper()
		m, err := New(context.Background(), cfg, root, state, quietLog(), WithHostNetNS(e.hostNS))
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(func() { m.Close() })
		return m
	}
	e.t.Cleanup(func() {
		for _, n := range testutil.Files(e.t, filepath.Join(state, "netns")) {
			_ = RemoveNetNS(filepath.Join(state, "netns", n))
		}
	})
	return start(), start
}

// Two instances on one host, restarted in turn, keep each other's
// hostPorts working and see each other's hostPorts as taken (issue 14,
// item 4: one shared table, flushed and swept by every start).
func TestTwoInstancesKeepEachOthersRules(t *testing.T) {
	e := newEnv(t, nil)
	a := e.manager()
	b, restartB := e.second()
	nsA, _ := e.pod(a, "pod-a", PortMapping{Protocol: "tcp", ContainerPort: 8080, HostPort: 18081})
	nsB, _ := e.pod(b, "pod-b", PortMapping{Protocol: "tcp", ContainerPort: 8080, HostPort: 18082})
	echoServer(t, nsA, ":8080")
	echoServer(t, nsB, ":8080")
	probe := func() {
		t.Helper()
		for _, port := range []string{"18081", "18082"} {
			echo(t, e.hostNS, net.JoinHostPort(hostAddr, port))
			echo(t, e.hostNS, net.JoinHostPort("127.0.0.1", port))
			echo(t, e.outsideNS, net.JoinHostPort(hostAddr, port))
		}
	}
	probe()
	for range 2 {
		a = e.manager()
		if err := a.Reconcile(context.Background(), []string{"pod-a"}); err != nil {
			t.Fatal(err)
		}
		probe()
		b = restartB()
		if err := b.Reconcile(context.Background(), []string{"pod-b"}); err != nil {
			t.Fatal(err)
		}
		probe()
	}
	// A hostPort of one instance is taken for the other.
	ns, err := NewNetNS(b.NetNSDir(), "pod-c")
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Setup(context.Background(), PodNetwork{PodID: "pod-c", NetNSPath: ns,
		PortMappings: []PortMapping{{Protocol: "tcp", ContainerPort: 80, HostPort: 18081}}})
	if !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("Setup with the other instance's hostPort = %v, want AlreadyExists", err)
	}
	if err := RemoveNetNS(ns); err != nil {
		t.Fatal(err)
	}
	e.remove(a, "pod-a")
	e.remove(b, "pod-b")
	assertNoLeaks(t, e)
}

// legacyTable writes the shared table of older versions as the instance
// on bridge (base rules) with rules for pods, then removes the instance's
// own table, as a host upgraded from such a version has it.
func (e *testEnv) legacyTable(bridge string, subnet string, pods map[string]netip.Addr) {
	e.t.Helper()
	ns, err := netns.GetFromPath(e.hostNS)
	if err != nil {
		e.t.Fatal(err)
	}
	defer ns.Close()
	old := nftRules{nsFD: int(ns), table: nftLegacyTable, bridge: bridge, subnets: []netip.Prefix{netip.MustParsePrefix(subnet)}}
	if err := old.ensure(); err != nil {
		e.t.Fatal(err)
	}
	for pod, ip := range pods {
		port := int32(18089) // another pod's, not in the way of pod-a's
		if pod == "pod-a" {
			port = 18081
		}
		if err := old.add(pod, []PortMapping{{Protocol: "tcp", ContainerPort: 8080, HostPort: port}}, []netip.Addr{ip}); err != nil {
			e.t.Fatal(err)
		}
	}
	c, err := old.conn()
	if err != nil {
		e.t.Fatal(err)
	}
	c.DelTable(&nftables.Table{Name: TableName(e.cfg.Bridge), Family: nftables.TableFamilyINet})
	if err := c.Flush(); err != nil {
		e.t.Fatal(err)
	}
}

// An upgraded daemon moves its own rules out of the legacy table, and
// removes the table only when nothing of another instance is in it.
func TestLegacyTableMigration(t *testing.T) {
	const tag = "cradle pod=pod-a tcp *:18081"
	for _, tc := range []struct {
		name       string
		baseOf     string // bridge whose instance wrote the base rules last
		otherPod   bool   // another instance's pod has a rule in it
		wantLegacy []string
	}{
		{name: "ours alone", baseOf: "crtest0"},
		{name: "another pod's rule", baseOf: "crtest0", otherPod: true, wantLegacy: []string{"cradle pod=pod-z tcp *:18089"}},
		{name: "another instance's base rules", baseOf: "crtest9", wantLegacy: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			m := e.manager()
			nsA, res := e.pod(m, "pod-a", PortMapping{Protocol: "tcp", ContainerPort: 8080, HostPort: 18081})
			ip, _ := netip.AddrFromSlice(res.IPs[0].To4())
			pods := map[string]netip.Addr{"pod-a": ip}
			if tc.otherPod {
				pods["pod-z"] = netip.MustParseAddr("10.124.0.9")
			}
			e.legacyTable(tc.baseOf, e.cfg.Subnet, pods)
			m = e.manager()
			if err := m.Reconcile(context.Background(), []string{"pod-a"}); err != nil {
				t.Fatal(err)
			}
			if got := testutil.NftRuleTags(t, e.hostNS, TableName(e.cfg.Bridge), nftHostPorts); !cmp.Equal(got, []string{tag}) {
				t.Errorf("own table rules = %q, want %q", got, tag)
			}
			legacy := testutil.NftRuleTags(t, e.hostNS, nftLegacyTable, nftHostPorts)
			if diff := cmp.Diff(tc.wantLegacy, legacy); diff != "" {
				t.Errorf("legacy table rules (-want +got):\n%s", diff)
			}
			keep := tc.otherPod || tc.baseOf != e.cfg.Bridge
			if got := e.hasTable(nftLegacyTable); got != keep {
				t.Errorf("legacy table present = %v, want %v", got, keep)
			}
			echoServer(t, nsA, ":8080")
			echo(t, e.hostNS, net.JoinHostPort(hostAddr, "18081"))
			e.remove(m, "pod-a")
			assertNoLeaks(t, e)
		})
	}
}

func (e *testEnv) hasTable(name string) bool {
	e.t.Helper()
	ns, err := netns.GetFromPath(e.hostNS)
	if err != nil {
		e.t.Fatal(err)
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		e.t.Fatal(err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, t := range tables {
		if t.Name == name {
			return true
		}
	}
	return false
}

// A bridge that a live daemon of another root claims is refused: the two
// would hand out the same addresses and sweep each other's veths. A claim
// whose daemon is gone is taken over.
func TestBridgeClaimedByAnotherLiveInstance(t *testing.T) {
	e := newEnv(t, nil)
	e.manager()
	root2, state2 := filepath.Join(e.dir, "root2"), filepath.Join(e.dir, "state2")
	_, err := New(context.Background(), e.cfg, root2, state2, quietLog(), WithHostNetNS(e.hostNS))
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("second instance on the bridge: err = %v, want FailedPrecondition", err)
	}
	// The claiming daemon is gone (same pid, another start time: the pid
	// was reused).
	gone := claim{root: e.root, pid: os.Getpid(), start: 1}
	e.inHost(func(h *netlink.Handle) error {
		l, err := h.LinkByName(e.cfg.Bridge)
		if err != nil {
			return err
		}
		return h.LinkSetAlias(l, gone.String())
	})
	m, err := New(context.Background(), e.cfg, root2, state2, quietLog(), WithHostNetNS(e.hostNS))
	if err != nil {
		t.Fatalf("taking over a dead instance's bridge: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	e.inHost(func(h *netlink.Handle) error {
		l, err := h.LinkByName(e.cfg.Bridge)
		if err != nil {
			return err
		}
		if c, ok := parseClaim(l.Attrs().Alias); !ok || c.root != root2 || c.pid != os.Getpid() || !c.alive() {
			t.Errorf("bridge alias %q, want a live claim of %s", l.Attrs().Alias, root2)
		}
		return nil
	})
}
