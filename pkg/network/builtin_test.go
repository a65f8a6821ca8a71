package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestBuiltinPodsReachEachOtherAndHostPort(t *testing.T) {
	e := newEnv(t, nil)
	m := e.manager()
	nsA, resA := e.pod(m, "pod-a", PortMapping{Protocol: "tcp", ContainerPort: 8080, HostPort: 18080})
	nsB, resB := e.pod(m, "pod-b")
	if len(resA.IPs) != 1 || len(resB.IPs) != 1 || resA.IPs[0].Equal(resB.IPs[0]) {
		t.Fatalf("IPs: a=%v b=%v", resA.IPs, resB.IPs)
	}
	if resA.Interface != "eth0" || resA.MTU != 1500 || !resA.Gateway.Equal(net.ParseIP("10.123.0.1")) {
		t.Errorf("result = %+v", resA)
	}
	echoServer(t, nsA, ":8080")
	echo(t, nsB, net.JoinHostPort(resA.IPs[0].String(), "8080"))
	echo(t, e.hostNS, net.JoinHostPort(hostAddr, "18080"))
	echo(t, e.hostNS, "127.0.0.1:18080")                      // localhost, as kubelet's probes and critest use
	echo(t, e.outsideNS, net.JoinHostPort(hostAddr, "18080")) // from beyond the host (prerouting)
	echo(t, nsB, net.JoinHostPort(hostAddr, "18080"))         // another pod, via the hostPort
	echo(t, nsA, net.JoinHostPort(hostAddr, "18080"))         // hairpin: the pod reaches itself

	// Setup again returns the same result without touching anything.
	again, err := m.Setup(context.Background(), PodNetwork{PodID: "pod-a", NetNSPath: nsA})
	if err != nil || !again.IPs[0].Equal(resA.IPs[0]) {
		t.Fatalf("repeat Setup = %+v, %v", again, err)
	}
	e.remove(m, "pod-a")
	e.remove(m, "pod-b")
	if err := m.Teardown(context.Background(), "pod-a"); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
	assertNoLeaks(t, e)
}

func TestBuiltinDualStack(t *testing.T) {
	e := newEnv(t, func(c *config.Network) { c.SubnetV6 = "fd12:3456::/64" })
	m := e.manager()
	nsA, resA := e.pod(m, "pod-a", PortMapping{Protocol: "tcp", ContainerPort: 80, HostPort: 8000})
	nsB, _ := e.pod(m, "pod-b")
	if len(resA.IPs) != 2 || resA.IPs[1].To4() != nil {
		t.Fatalf("IPs = %v", resA.IPs)
	}
	echoServer(t, nsA, ":80")
	echo(t, nsB, net.JoinHostPort(resA.IPs[1].String(), "80"))
	echo(t, nsB, net.JoinHostPort(resA.IPs[0].String(), "80"))
	if got := len(e.snapshot().Rules); got != 2 {
		t.Errorf("%d hostport rules, want one per family", got)
	}
	e.remove(m, "pod-a")
	e.remove(m, "pod-b")
	assertNoLeaks(t, e)
}

func TestHostNetworkPodOnlyRecorded(t *testing.T) {
	e := newEnv(t, nil)
	m := e.manager()
	res, err := m.Setup(context.Background(), PodNetwork{PodID: "hostpod", HostNetwork: true})
	if err != nil || len(res.IPs) != 0 {
		t.Fatalf("Setup = %+v, %v", res, err)
	}
	s := e.snapshot()
	if len(s.Veths)+len(s.Leases) != 0 || len(s.Records) != 1 {
		t.Errorf("state = %+v", s)
	}
	if err := m.Teardown(context.Background(), "hostpod"); err != nil {
		t.Fatal(err)
	}
	assertNoLeaks(t, e)
}

func TestCreateTeardownCyclesLeaveNothing(t *testing.T) {
	e := newEnv(t, nil)
	m := e.manager()
	cycles := 200
	if testing.Short() {
		cycles = 20
	}
	for i := range cycles {
		id := fmt.Sprintf("cycle-%d", i)
		e.pod(m, id, PortMapping{Protocol: "udp", ContainerPort: 53, HostPort: 5353})
		e.remove(m, id)
	}
	assertNoLeaks(t, e)
}

// Every step of Setup fails in turn; nothing may be left.
func TestSetupRollback(t *testing.T) {
	e := newEnv(t, nil)
	m := e.manager()
	boom := errors.New("injected failure")
	for _, step := range []string{"record", "lease", "veth", "address", "hostports"} {
		t.Run(step, func(t *testing.T) {
			m.failAt = func(s string) error {
				if s == step {
					return boom
				}
				return nil
			}
			defer func() { m.failAt = nil }()
			ns, err := NewNetNS(m.NetNSDir(), "rb")
			if err != nil {
				t.Fatal(err)
			}
			_, err = m.Setup(context.Background(), PodNetwork{PodID: "rb", NetNSPath: ns,
				PortMappings: []PortMapping{{Protocol: "tcp", ContainerPort: 80, HostPort: 8080}}})
			if !errors.Is(err, boom) || !strings.Contains(err.Error(), step) {
				t.Fatalf("Setup err = %v, want the injected failure at %s", err, step)
			}
			if links := linksIn(t, ns); !cmp.Equal(links, []string{"lo"}) {
				t.Errorf("pod netns links after rollback = %v", links)
			}
			if err := RemoveNetNS(ns); err != nil {
				t.Fatal(err)
			}
			assertNoLeaks(t, e)
		})
	}
	// The manager still works after all those rollbacks.
	e.pod(m, "after")
	e.remove(m, "after")
	assertNoLeaks(t, e)
}

func TestBadInput(t *testing.T) {
	t.Run("subnet overlapping a host route", func(t *testing.T) {
		e := newEnv(t, func(c *config.Network) { c.Subnet = "192.0.2.0/25" })
		_, err := New(context.Background(), e.cfg, e.root, e.state, quietLog(), WithHostNetNS(e.hostNS))
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "overlaps host route 192.0.2.0/24 dev uplink0") {
			t.Fatalf("New = %v, want an overlap error naming the route", err)
		}
		if links := testutil.Links(t, e.hostNS); strings.Contains(strings.Join(links, " "), "crtest0") {
			t.Errorf("bridge created despite the refusal: %v", links)
		}
	})
	t.Run("hostPort mapped by another pod", func(t *testing.T) {
		e := newEnv(t, nil)
		m := e.manager()
		e.pod(m, "first", PortMapping{Protocol: "tcp", ContainerPort: 80, HostPort: 8080})
		ns, err := NewNetNS(m.NetNSDir(), "second")
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.Setup(context.Background(), PodNetwork{PodID: "second", NetNSPath: ns, PortMappings: []PortMapping{
			{Protocol: "udp", ContainerPort: 80, HostPort: 8080}, // other protocol: fine
			{Protocol: "tcp", ContainerPort: 80, HostPort: 8080, HostIP: hostAddr},
		}})
		if !errors.Is(err, errdefs.ErrAlreadyExists) || !strings.Contains(err.Error(), "hostPort 8080/tcp") || !strings.Contains(err.Error(), "first") {
			t.Fatalf("Setup = %v, want AlreadyExists naming 8080/tcp and pod first", err)
		}
		e.remove(m, "first")
		_ = RemoveNetNS(ns)
		assertNoLeaks(t, e)
	})
	t.Run("hostPort held by a host socket", func(t *testing.T) {
		e := newEnv(t, nil)
		m := e.manager()
		var l net.Listener
		if err := WithNetNS(e.hostNS, func() (err error) { l, err = net.Listen("tcp", hostAddr+":9090"); return err }); err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ns, err := NewNetNS(m.NetNSDir(), "p")
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.Setup(context.Background(), PodNetwork{PodID: "p", NetNSPath: ns, PortMappings: []PortMapping{{Protocol: "tcp", ContainerPort: 80, HostPort: 9090}}})
		if !errors.Is(err, errdefs.ErrAlreadyExists) || !strings.Contains(err.Error(), "hostPort 9090/tcp") {
			t.Fatalf("Setup = %v, want AlreadyExists naming 9090/tcp", err)
		}
		_ = RemoveNetNS(ns)
		assertNoLeaks(t, e)
	})
	t.Run("subnet exhausted", func(t *testing.T) {
		e := newEnv(t, func(c *config.Network) { c.Subnet = "10.124.0.0/30" }) // one usable address
		m := e.manager()
		e.pod(m, "only")
		ns, err := NewNetNS(m.NetNSDir(), "more")
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.Setup(context.Background(), PodNetwork{PodID: "more", NetNSPath: ns})
		if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "10.124.0.0/30 has no free address") {
			t.Fatalf("Setup = %v, want ResourceExhausted", err)
		}
		_ = RemoveNetNS(ns)
		e.remove(m, "only")
		assertNoLeaks(t, e)
	})
	t.Run("invalid pods", func(t *testing.T) {
		for _, p := range []PodNetwork{
			{PodID: "../x", NetNSPath: "/x"},
			{PodID: "ok", NetNSPath: "relative"},
			{PodID: "ok", NetNSPath: "/x", PortMappings: []PortMapping{{Protocol: "sctp", ContainerPort: 1, HostPort: 1}}},
			{PodID: "ok", NetNSPath: "/x", PortMappings: []PortMapping{{Protocol: "tcp", ContainerPort: 0, HostPort: 1}}},
			{PodID: "ok", NetNSPath: "/x", PortMappings: []PortMapping{{Protocol: "tcp", ContainerPort: 1, HostPort: 1, HostIP: "nope"}}},
		} {
			if err := validatePod(p); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("validatePod(%+v) = %v, want InvalidArgument", p, err)
			}
		}
	})
}

func TestReady(t *testing.T) {
	e := newEnv(t, nil)
	m := e.manager()
	if ok, reason, msg := m.Ready(context.Background()); !ok {
		t.Fatalf("Ready = false, %s: %s", reason, msg)
	}
	e.inHost(func(h *netlink.Handle) error {
		l, err := h.LinkByName(e.cfg.Bridge)
		if err != nil {
			return err
		}
		return h.LinkSetDown(l)
	})
	if ok, reason, msg := m.Ready(context.Background()); ok || reason != "NetworkPluginNotReady" || !strings.Contains(msg, "down") {
		t.Errorf("Ready with the bridge down = %v, %q, %q", ok, reason, msg)
	}
	e.inHost(func(h *netlink.Handle) error {
		l, err := h.LinkByName(e.cfg.Bridge)
		if err != nil {
			return err
		}
		return h.LinkDel(l)
	})
	if ok, _, msg := m.Ready(context.Background()); ok {
		t.Errorf("Ready without a bridge = true (%s)", msg)
	}
	// A new Manager (a restart) recreates it.
	m2 := e.manager()
	if ok, reason, msg := m2.Ready(context.Background()); !ok {
		t.Errorf("Ready after restart = false, %s: %s", reason, msg)
	}
}

func assertNoLeaks(t *testing.T, e *testEnv) {
	t.Helper()
	if diff := cmp.Diff(hostState{}, e.snapshot()); diff != "" {
		t.Errorf("leaked network state (-want +got):\n%s", diff)
	}
}

func linksIn(t *testing.T, ns string) []string {
	t.Helper()
	return testutil.Links(t, ns)
}

func TestSetPodSubnets(t *testing.T) {
	e := newEnv(t, nil)
	m := e.manager()
	ctx := context.Background()
	e.pod(m, "holder")
	if err := m.SetPodSubnets(ctx, "10.130.0.0/24"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("change while a pod holds a lease = %v, want FailedPrecondition", err)
	}
	e.remove(m, "holder")
	for _, bad := range []string{"nonsense", "10.130.0.1/24", "192.0.2.0/24"} {
		if err := m.SetPodSubnets(ctx, bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("SetPodSubnets(%q) = %v, want InvalidArgument", bad, err)
		}
	}
	if err := m.SetPodSubnets(ctx, "10.130.0.0/24"); err != nil {
		t.Fatal(err)
	}
	nsA, resA := e.pod(m, "a")
	nsB, resB := e.pod(m, "b")
	if !strings.HasPrefix(resA.IPs[0].String(), "10.130.0.") || !resB.Gateway.Equal(net.ParseIP("10.130.0.1")) {
		t.Fatalf("after the change: a=%+v b=%+v", resA, resB)
	}
	echoServer(t, nsA, ":7000")
	echo(t, nsB, net.JoinHostPort(resA.IPs[0].String(), "7000"))
	e.remove(m, "a")
	e.remove(m, "b")
	assertNoLeaks(t, e)
}

// Egress: a pod reaches a machine beyond the host, which sees the host's
// address when masquerade is on and the pod's when it is off.
func TestEgressMasquerade(t *testing.T) {
	for _, masq := range []bool{true, false} {
		t.Run(fmt.Sprintf("masquerade=%v", masq), func(t *testing.T) {
			e := newEnv(t, func(c *config.Network) { c.Masquerade = masq })
			m := e.manager()
			ns, res := e.pod(m, "egress")
			var l net.Listener
			if err := WithNetNS(e.outsideNS, func() (err error) { l, err = net.Listen("tcp", outsideAddr+":7777"); return err }); err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if !masq {
				// Without masquerade the outside needs a route back to pods.
				if err := WithNetNS(e.outsideNS, func() error {
					_, dst, _ := net.ParseCIDR(e.cfg.Subnet)
					return netlink.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP(hostAddr)})
				}); err != nil {
					t.Fatal(err)
				}
			}
			seen := make(chan string, 1)
			go func() {
				c, err := l.Accept()
				if err != nil {
					seen <- err.Error()
					return
				}
				defer c.Close()
				seen <- c.RemoteAddr().(*net.TCPAddr).IP.String()
			}()
			var c net.Conn
			if err := WithNetNS(ns, func() (err error) { c, err = net.DialTimeout("tcp", outsideAddr+":7777", 3*time.Second); return err }); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			want := hostAddr
			if !masq {
				want = res.IPs[0].String()
			}
			if got := <-seen; got != want {
				t.Errorf("outside saw %s, want %s", got, want)
			}
		})
	}
}

// A bridge deleted by hand does not make a pod CIDR change fail: the bridge
// comes back with the new gateway.
func TestSetPodSubnetsWithoutBridge(t *testing.T) {
	e := newEnv(t, nil)
	m := e.manager()
	ctx := context.Background()
	if err := WithNetNS(e.hostNS, func() error {
		l, err := netlink.LinkByName(e.cfg.Bridge)
		if err != nil {
			return err
		}
		return netlink.LinkDel(l)
	}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetPodSubnets(ctx, "10.131.0.0/24"); err != nil {
		t.Fatalf("SetPodSubnets without a bridge: %v", err)
	}
	if ok, reason, msg := m.Ready(ctx); !ok {
		t.Errorf("not ready after the change: %s: %s", reason, msg)
	}
	_, res := e.pod(m, "a")
	if !res.Gateway.Equal(net.ParseIP("10.131.0.1")) {
		t.Errorf("gateway = %v", res.Gateway)
	}
	e.remove(m, "a")
	assertNoLeaks(t, e)
}

// A pod that routes 127.0.0.0/8 to the bridge (it would need NET_ADMIN)
// still cannot reach the host's loopback services, route_localnet or not.
func TestPodsCannotReachHostLoopback(t *testing.T) {
	e := newEnv(t, nil)
	m := e.manager()
	ns, res := e.pod(m, "pod-a")
	echoServer(t, e.hostNS, "127.0.0.2:7070")
	if err := WithNetNS(ns, func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		eth0, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/eth0/route_localnet", []byte("1"), 0o644); err != nil {
			return err
		}
		_, dst, _ := net.ParseCIDR("127.0.0.2/32")
		return h.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: dst, Gw: res.Gateway, Table: unix.RT_TABLE_MAIN, Priority: 1})
	}); err != nil {
		t.Fatal(err)
	}
	var err error
	_ = WithNetNS(ns, func() error {
		// Ahead of the local table, where 127.0.0.0/8 is the pod's own.
		local := netlink.NewRule()
		local.Priority, local.Table = 0, unix.RT_TABLE_LOCAL
		if err := netlink.RuleDel(local); err != nil {
			return err
		}
		local.Priority = 100
		if err := netlink.RuleAdd(local); err != nil {
			return err
		}
		rule := netlink.NewRule()
		rule.Priority, rule.Table, rule.Dst = 1, unix.RT_TABLE_MAIN, &net.IPNet{IP: net.ParseIP("127.0.0.2"), Mask: net.CIDRMask(32, 32)}
		if err := netlink.RuleAdd(rule); err != nil {
			return err
		}
		var c net.Conn
		c, err = net.DialTimeout("tcp", "127.0.0.2:7070", time.Second)
		if err == nil {
			c.Close()
		}
		return nil
	})
	if err == nil {
		t.Error("a pod reached a service on the host's loopback")
	}
	e.remove(m, "pod-a")
}
