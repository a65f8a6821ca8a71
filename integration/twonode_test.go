package integration

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/network"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cniBin is Debian's containernetworking-plugins.
const cniBin = "/usr/lib/cni"

// node is one stand-in node: a network namespace with an address on the
// link between the nodes, a pod CIDR routed to it, and a cradle daemon
// running in it in the default network mode (auto) with a CNI
// configuration in its conf dir, as a cluster's network add-on leaves one.
type node struct {
	ns     string // its network namespace
	addr   string // on the link between the nodes
	podNet string // its pod CIDR
	d      *daemon
}

// TestTwoNodesCNI: two cradle daemons in two network namespaces joined by
// a veth, each with its own pod CIDR and a route to the other's, both
// running Debian's bridge, host-local and portmap plugins through auto
// mode: a pod on one node reaches a pod on the other by IP, and a hostPort
// answers on each node's address.
func TestTwoNodesCNI(t *testing.T) {
	testutil.RequireRoot(t)
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		testutil.RequireBinary(t, filepath.Join(cniBin, p))
	}
	testutil.RequireBinary(t, "iptables") // portmap programs iptables
	testutil.RequireBinary(t, "nsenter")
	dir := t.TempDir()
	nodes := []*node{
		{addr: "192.168.231.1", podNet: "10.241.1.0/24"},
		{addr: "192.168.231.2", podNet: "10.241.2.0/24"},
	}
	for i, n := range nodes {
		ns, err := network.NewNetNS(filepath.Join(dir, "nodes"), fmt.Sprintf("node%d", i))
		if err != nil {
			t.Fatal(err)
		}
		n.ns = ns
		t.Cleanup(func() { _ = network.RemoveNetNS(ns) })
	}
	linkNodes(t, nodes)

	ctx := ctxT(t)
	pods := make([]string, len(nodes))
	ips := make([]string, len(nodes))
	for i, n := range nodes {
		ndir := filepath.Join(dir, fmt.Sprintf("n%d", i))
		confDir := filepath.Join(ndir, "net.d")
		if err := os.MkdirAll(confDir, 0o755); err != nil {
			t.Fatal(err)
		}
		conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "twonode",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}`, n.podNet, filepath.Join(ndir, "ipam"))
		if err := os.WriteFile(filepath.Join(confDir, "10-twonode.conflist"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		// Its own bridge and subnet for the built-in network it does not
		// use: auto mode finds the configuration and makes none.
		n.d = newDaemonNetNS(t, ndir, n.ns, fmt.Sprintf("crnode%d", i), fmt.Sprintf("10.242.%d.0/24", i),
			fmt.Sprintf("cni_conf_dir = %q\ncni_bin_dirs = [%q]\n", confDir, cniBin), "")
		st, err := n.d.Runtime.Status(ctx, &runtime.StatusRequest{Verbose: true})
		if err != nil || st.Info["networkMode"] == "" || st.Info["networkMode"][:3] != "cni" {
			t.Fatalf("node %d network mode = %q (%v)", i, st.GetInfo()["networkMode"], err)
		}
		cfg := podSandboxConfig(fmt.Sprintf("web%d", i))
		cfg.PortMappings = []*runtime.PortMapping{{Protocol: runtime.Protocol_TCP, ContainerPort: 7000, HostPort: 18200 + int32(i)}}
		r, err := n.d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		pods[i] = r.PodSandboxId
		d := n.d
		t.Cleanup(func() {
			_, _ = d.Runtime.RemovePodSandbox(ctxT(t), &runtime.RemovePodSandboxRequest{PodSandboxId: r.PodSandboxId})
		})
		ps, err := n.d.Runtime.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: pods[i]})
		if err != nil {
			t.Fatal(err)
		}
		ips[i] = ps.Status.GetNetwork().GetIp()
		if _, cidr, _ := net.ParseCIDR(n.podNet); !cidr.Contains(net.ParseIP(ips[i])) {
			t.Fatalf("node %d's pod got %q, want an address in its CIDR %s", i, ips[i], n.podNet)
		}
		stop := echoServerIn(t, filepath.Join(ndir, "run", "netns", pods[i]), ":7000")
		defer stop()
	}

	podNS := func(i int) string { return filepath.Join(nodes[i].d.dir, "run", "netns", pods[i]) }
	// Pod to pod across the nodes, both ways, by pod IP.
	echoFrom(t, podNS(1), net.JoinHostPort(ips[0], "7000"))
	echoFrom(t, podNS(0), net.JoinHostPort(ips[1], "7000"))
	// Each node's hostPort, from the other node.
	echoFrom(t, nodes[1].ns, net.JoinHostPort(nodes[0].addr, "18200"))
	echoFrom(t, nodes[0].ns, net.JoinHostPort(nodes[1].addr, "18201"))

	for i, n := range nodes {
		if _, err := n.d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pods[i]}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes { // once both are gone: each sees the other's pod cgroup
		assertNoPodLeaks(t, n.d)
	}
}

// linkNodes joins the nodes' namespaces with a veth, gives each its
// address on it and a route to the other's pod CIDR through the other, and
// lets each forward.
func linkNodes(t *testing.T, nodes []*node) {
	t.Helper()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "crnodea"}, PeerName: "crnodeb"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(veth) }) // gone with the namespaces when moved
	for i, name := range []string{"crnodea", "crnodeb"} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		h, err := netns.GetFromPath(nodes[i].ns)
		if err != nil {
			t.Fatal(err)
		}
		err = netlink.LinkSetNsFd(l, int(h))
		h.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range nodes {
		other := nodes[1-i]
		name := []string{"crnodea", "crnodeb"}[i]
		err := network.WithNetNS(n.ns, func() error {
			for _, ln := range []string{"lo", name} {
				l, err := netlink.LinkByName(ln)
				if err != nil {
					return err
				}
				if ln == name {
					addr, _ := netlink.ParseAddr(n.addr + "/24")
					if err := netlink.AddrAdd(l, addr); err != nil {
						return err
					}
				}
				if err := netlink.LinkSetUp(l); err != nil {
					return err
				}
			}
			_, dst, _ := net.ParseCIDR(other.podNet)
			if err := netlink.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP(other.addr)}); err != nil {
				return fmt.Errorf("route to %s: %w", other.podNet, err)
			}
			return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
		})
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
}
