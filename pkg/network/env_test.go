package network

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// hostAddr is the "host" address of the fake host namespace tests use;
// outsideAddr is a machine beyond it, in a third namespace.
const (
	hostAddr    = "192.0.2.1"
	outsideAddr = "192.0.2.2"
)

// testEnv is a fake host: a fresh network namespace playing the host's, and
// root/state directories. Everything the Manager creates lives in it, and
// removing it removes everything; the real host is never touched.
type testEnv struct {
	t      testing.TB
	dir    string
	root   string
	state  string
	hostNS string
	// outsideNS holds the other end of the fake host's uplink.
	outsideNS string
	cfg       config.Network
}

func newEnv(t testing.TB, mod func(*config.Network)) *testEnv {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	e := &testEnv{t: t, dir: dir, root: filepath.Join(dir, "root"), state: filepath.Join(dir, "state"), cfg: config.Default().Network}
	e.cfg.Bridge = "crtest0"
	e.cfg.Subnet = "10.123.0.0/24"
	e.cfg.Mode = config.NetworkBuiltin // not the default auto: the host's /etc/cni/net.d must not matter
	if mod != nil {
		mod(&e.cfg)
	}
	hostNS, err := NewNetNS(filepath.Join(dir, "hostns"), "host")
	if err != nil {
		t.Fatal(err)
	}
	e.hostNS = hostNS
	if e.outsideNS, err = NewNetNS(filepath.Join(dir, "hostns"), "outside"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Pod namespaces first, then the fake host: its bridge, veths and
		// nftables table vanish with it.
		for _, n := range testutil.Files(t, filepath.Join(e.state, "netns")) {
			_ = RemoveNetNS(filepath.Join(e.state, "netns", n))
		}
		for _, ns := range []string{hostNS, e.outsideNS} {
			if err := RemoveNetNS(ns); err != nil {
				t.Error(err)
			}
		}
	})
	outside, err := netns.GetFromPath(e.outsideNS)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = outside.Close() }()
	e.inHost(func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := h.LinkSetUp(lo); err != nil {
			return err
		}
		// The fake host's uplink: a veth pair to the "outside" namespace.
		d := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink0"}, PeerName: "uplink1", PeerNamespace: netlink.NsFd(outside)}
		if err := h.LinkAdd(d); err != nil {
			return err
		}
		a, _ := netlink.ParseAddr(hostAddr + "/24")
		if err := h.AddrAdd(d, a); err != nil {
			return err
		}
		return h.LinkSetUp(d)
	})
	oh, err := netlink.NewHandleAt(outside)
	if err != nil {
		t.Fatal(err)
	}
	defer oh.Close()
	for _, name := range []string{"lo", "uplink1"} {
		l, err := oh.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if name == "uplink1" {
			a, _ := netlink.ParseAddr(outsideAddr + "/24")
			if err := oh.AddrAdd(l, a); err != nil {
				t.Fatal(err)
			}
		}
		if err := oh.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// inHost runs fn with a netlink handle in the fake host namespace.
func (e *testEnv) inHost(fn func(h *netlink.Handle) error) {
	e.t.Helper()
	ns, err := netns.GetFromPath(e.hostNS)
	if err != nil {
		e.t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		e.t.Fatal(err)
	}
	defer h.Close()
	if err := fn(h); err != nil {
		e.t.Fatal(err)
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (e *testEnv) manager() *Manager {
	e.t.Helper()
	m, err := New(context.Background(), e.cfg, e.root, e.state, quietLog(), WithHostNetNS(e.hostNS))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { m.Close() })
	return m
}

// pod creates a pod namespace and sets it up.
func (e *testEnv) pod(m *Manager, id string, ports ...PortMapping) (string, Result) {
	e.t.Helper()
	ns, err := NewNetNS(m.NetNSDir(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := m.Setup(context.Background(), PodNetwork{PodID: id, Name: id, Namespace: "default", NetNSPath: ns, PortMappings: ports})
	if err != nil {
		e.t.Fatalf("Setup %s: %v", id, err)
	}
	return ns, res
}

// remove tears a pod down and removes its namespace, as the engine does.
func (e *testEnv) remove(m *Manager, id string) {
	e.t.Helper()
	if err := m.Teardown(context.Background(), id); err != nil {
		e.t.Fatalf("Teardown %s: %v", id, err)
	}
	if err := RemoveNetNS(filepath.Join(m.NetNSDir(), id)); err != nil {
		e.t.Fatal(err)
	}
}

// hostState is what the leak and convergence checks compare: pod veths in
// the fake host, hostport rule tags, lease owners, records and netns files.
type hostState struct {
	Veths   []string
	Rules   []string
	Leases  []string // owners
	Records []string
	NetNS   []string
}

func (e *testEnv) snapshot() hostState {
	e.t.Helper()
	var s hostState
	for _, l := range testutil.Links(e.t, e.hostNS) {
		if strings.HasPrefix(l, vethPrefix) {
			s.Veths = append(s.Veths, l)
		}
	}
	s.Rules = testutil.NftRuleTags(e.t, e.hostNS, TableName(e.cfg.Bridge), nftHostPorts)
	leaseDir := filepath.Join(e.root, "network", "ipam", e.cfg.Bridge)
	for _, f := range testutil.Files(e.t, leaseDir) {
		if f == leaseLock || strings.HasPrefix(f, leaseHint) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(leaseDir, f))
		if err != nil {
			e.t.Fatal(err)
		}
		s.Leases = append(s.Leases, string(b))
	}
	slices.Sort(s.Leases)
	s.Records = testutil.Files(e.t, filepath.Join(e.state, "network", "pods"))
	s.NetNS = testutil.Files(e.t, filepath.Join(e.state, "netns"))
	return s
}

// expected is the hostState of exactly these pods (each with one hostPort
// rule per entry of rules).
func (e *testEnv) expected(pods []string, rules map[string][]string, leasesPer int) hostState {
	var s hostState
	for _, id := range pods {
		s.Veths = append(s.Veths, vethName(id))
		for range leasesPer {
			s.Leases = append(s.Leases, id)
		}
		s.Records = append(s.Records, id+".json")
		s.NetNS = append(s.NetNS, id)
		s.Rules = append(s.Rules, rules[id]...)
	}
	slices.Sort(s.Veths)
	slices.Sort(s.Leases)
	slices.Sort(s.Records)
	slices.Sort(s.NetNS)
	slices.Sort(s.Rules)
	return s
}

// echoServer serves TCP echo on addr inside the namespace at nsPath. The
// listening socket belongs to the namespace it was made in, so Accept runs
// on any thread.
func echoServer(t testing.TB, nsPath, addr string) {
	t.Helper()
	var l net.Listener
	if err := WithNetNS(nsPath, func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// echo dials addr from inside nsPath and checks the echo.
func echo(t testing.TB, nsPath, addr string) {
	t.Helper()
	var c net.Conn
	if err := WithNetNS(nsPath, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 3*time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial %s from %s: %v", addr, filepath.Base(nsPath), err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	msg := "hello " + addr
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read echo from %s: %v", addr, err)
	}
	if string(buf) != msg {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
}

func testutilMounts(t testing.TB, prefix string) []string { return testutil.Mounts(t, prefix) }
