package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/cleanup"
	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// vethPrefix starts the host-side name of every pod veth. The rest of the
// name is derived from the pod ID, so teardown finds it without memory.
const vethPrefix = "veth"

// vethName is vethPrefix + 11 hex digits of sha256(podID): 15 characters,
// the kernel's limit.
func vethName(podID string) string {
	sum := sha256.Sum256([]byte(podID))
	return vethPrefix + hex.EncodeToString(sum[:])[:11]
}

// builtinNet is the embedded network: one bridge, a veth per pod, leases
// from ipam, DNAT and masquerade rules in nftables.
type builtinNet struct {
	m        *Manager
	root     string // the instance's root, which claims the bridge (claim.go)
	bridge   string
	mtu      int
	subnets  []netip.Prefix // IPv4 first, then the optional IPv6 subnet
	gateways []netip.Addr   // .1 of each subnet, on the bridge
	ipam     ipam
	nft      nftRules
}

func newBuiltin(ctx context.Context, m *Manager, cfg config.Network, root string) (*builtinNet, error) {
	leaseDir := filepath.Join(root, "network", "ipam", cfg.Bridge)
	b := &builtinNet{m: m, root: root, bridge: cfg.Bridge, mtu: cfg.MTU, ipam: ipam{dir: leaseDir}}
	for _, s := range []string{cfg.Subnet, cfg.SubnetV6} {
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("pod subnet %q: %w", s, errdefs.ErrInvalidArgument)
		}
		b.subnets = append(b.subnets, p.Masked())
		b.gateways = append(b.gateways, p.Masked().Addr().Next())
	}
	b.nft = nftRules{nsFD: int(m.hostNS), table: TableName(b.bridge), bridge: b.bridge, subnets: b.subnets, masquerade: cfg.Masquerade}
	if err := b.checkClaim(root); err != nil {
		return nil, err
	}
	if err := b.checkOverlap(b.subnets); err != nil {
		return nil, err
	}
	if err := b.ensureBridge(); err != nil {
		return nil, err
	}
	if err := b.nft.ensure(); err != nil {
		return nil, err
	}
	// Our pods' rules go into our table before they leave the legacy one.
	ours, err := b.restoreRules(ctx)
	if err != nil {
		return nil, err
	}
	if err := b.nft.migrateLegacy(ctx, m.log, func(pod string) bool { return slices.Contains(ours, pod) }); err != nil {
		return nil, err
	}
	m.log.InfoContext(ctx, "built-in pod network ready", "bridge", b.bridge, "subnets", b.subnets, "nftables_table", b.nft.table)
	return b, nil
}

// checkOverlap refuses pod subnets that overlap a route of the host that
// is not the bridge's own: pods would shadow (or be shadowed by) real
// destinations.
func (b *builtinNet) checkOverlap(subnets []netip.Prefix) error {
	brIndex := -1
	if l, err := b.m.host.LinkByName(b.bridge); err == nil {
		brIndex = l.Attrs().Index
	}
	routes, err := b.m.host.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list host routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.LinkIndex == brIndex {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		addr, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok || ones == 0 {
			continue // default routes overlap everything by design
		}
		dst := netip.PrefixFrom(addr.Unmap(), ones)
		for _, s := range subnets {
			if s.Overlaps(dst) {
				dev := ""
				if l, err := b.m.host.LinkByIndex(r.LinkIndex); err == nil {
					dev = " dev " + l.Attrs().Name
				}
				return fmt.Errorf("pod subnet %s overlaps host route %s%s; choose another network.subnet: %w",
					s, dst, dev, errdefs.ErrInvalidArgument)
			}
		}
	}
	return nil
}

// ensureBridge creates the bridge if needed, gives it the gateway
// addresses, brings it up and enables forwarding in the host namespace.
func (b *builtinNet) ensureBridge() error {
	h := b.m.host
	l, err := h.LinkByName(b.bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return fmt.Errorf("look up bridge %s: %w", b.bridge, err)
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: b.bridge, MTU: b.mtu}}
		if err := h.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", b.bridge, err)
		}
		if l, err = h.LinkByName(b.bridge); err != nil {
			return fmt.Errorf("look up bridge %s: %w", b.bridge, err)
		}
	}
	if _, ok := l.(*netlink.Bridge); !ok {
		return fmt.Errorf("%s exists and is a %s, not a bridge: %w", b.bridge, l.Type(), errdefs.ErrFailedPrecondition)
	}
	if l.Attrs().MTU != b.mtu {
		if err := h.LinkSetMTU(l, b.mtu); err != nil {
			return fmt.Errorf("set MTU of bridge %s: %w", b.bridge, err)
		}
	}
	for i, s := range b.subnets {
		a := &netlink.Addr{IPNet: ipNet(b.gateways[i], s.Bits())}
		if s.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrReplace(l, a); err != nil {
			return fmt.Errorf("address %s on bridge %s: %w", a.IPNet, b.bridge, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring up bridge %s: %w", b.bridge, err)
	}
	if err := b.writeClaim(l); err != nil {
		return err
	}
	return WithNetNS(b.m.hostPath, func() error {
		// route_localnet: hostPorts reached on 127.0.0.1 (see nft.go).
		sysctls := []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/conf/" + b.bridge + "/route_localnet"}
		if len(b.subnets) > 1 {
			sysctls = append(sysctls, "/proc/sys/net/ipv6/conf/all/forwarding")
		}
		for _, p := range sysctls {
			if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
				return fmt.Errorf("enable forwarding: %w", err)
			}
		}
		return nil
	})
}

func (b *builtinNet) ready() error {
	l, err := b.m.host.LinkByName(b.bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", b.bridge, err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("bridge %s is down", b.bridge)
	}
	return b.nft.present()
}

// setup runs the named steps of a built-in pod: lease, veth, address,
// hostports. Each pushes its undo before it can leave anything behind.
func (b *builtinNet) setup(ctx context.Context, pod PodNetwork, rec *record, u *cleanup.Stack) error {
	if b.ready() != nil {
		// Someone removed or downed the bridge or table: put them back.
		if err := b.ensureBridge(); err != nil {
			return err
		}
		if err := b.nft.ensure(); err != nil {
			return err
		}
	}
	maps := activeMappings(pod.PortMappings)
	if err := b.checkPorts(pod.PodID, maps); err != nil {
		return err
	}
	u.Push(func(context.Context) error { return b.ipam.release(pod.PodID, nil) })
	var ips []netip.Addr
	for i, s := range b.subnets {
		ip, err := b.ipam.allocate(pod.PodID, s, b.gateways[i])
		if err != nil {
			return err
		}
		ips = append(ips, ip)
		rec.IPs = append(rec.IPs, ip.String())
	}
	rec.Gateway = b.gateways[0].String()
	if err := b.m.step("lease"); err != nil {
		return err
	}

	podNS, err := netns.GetFromPath(pod.NetNSPath)
	if err != nil {
		return fmt.Errorf("open pod netns %s: %w", pod.NetNSPath, err)
	}
	defer func() { _ = podNS.Close() }()
	u.Push(func(context.Context) error { return b.deleteVeth(rec.Veth) })
	if err := b.createVeth(rec.Veth, podNS); err != nil {
		return err
	}
	if err := b.m.step("veth"); err != nil {
		return err
	}
	if err := b.configurePod(podNS, ips); err != nil {
		return err
	}
	if err := b.m.step("address"); err != nil {
		return err
	}
	if len(maps) > 0 {
		u.Push(func(context.Context) error { return b.nft.remove(func(p string) bool { return p == pod.PodID }) })
		if err := b.nft.add(pod.PodID, maps, ips); err != nil {
			return err
		}
	}
	return b.m.step("hostports")
}

func activeMappings(in []PortMapping) []PortMapping {
	var out []PortMapping
	for _, pm := range in {
		if pm.HostPort != 0 {
			out = append(out, pm)
		}
	}
	return out
}

// createVeth makes the pair: host end on the bridge with hairpin on, pod
// end created directly as eth0 inside the pod namespace.
func (b *builtinNet) createVeth(name string, podNS netns.NsHandle) error {
	h := b.m.host
	br, err := h.LinkByName(b.bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", b.bridge, err)
	}
	if err := b.deleteVeth(name); err != nil { // a stale end from a crash
		return err
	}
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name, MTU: b.mtu, MasterIndex: br.Attrs().Index},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(podNS),
		PeerMTU:       uint32(b.mtu),
	}
	if err := h.LinkAdd(v); err != nil {
		return fmt.Errorf("create veth %s: %w", name, err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("look up veth %s: %w", name, err)
	}
	if err := h.LinkSetHairpin(l, true); err != nil {
		return fmt.Errorf("hairpin on veth %s: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring up veth %s: %w", name, err)
	}
	return nil
}

// deleteVeth removes the pair (deleting one end deletes both); a missing
// link is fine.
func (b *builtinNet) deleteVeth(name string) error {
	l, err := b.m.host.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("look up veth %s: %w", name, err)
	}
	if err := b.m.host.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete veth %s: %w", name, err)
	}
	return nil
}

// configurePod gives eth0 its addresses, brings eth0 and lo up and adds the
// default routes via the bridge gateways.
func (b *builtinNet) configurePod(podNS netns.NsHandle, ips []netip.Addr) error {
	h, err := netlink.NewHandleAt(podNS)
	if err != nil {
		return fmt.Errorf("netlink in pod netns: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("pod lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up pod lo: %w", err)
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("pod eth0: %w", err)
	}
	for i, ip := range ips {
		a := &netlink.Addr{IPNet: ipNet(ip, b.subnets[i].Bits())}
		if ip.Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(eth, a); err != nil {
			return fmt.Errorf("address %s on pod eth0: %w", a.IPNet, err)
		}
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bring up pod eth0: %w", err)
	}
	for _, gw := range b.gateways {
		r := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw.AsSlice()}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("default route via %s in pod: %w", gw, err)
		}
	}
	return nil
}

// checkPorts refuses hostPorts that another pod maps (per the kernel's
// rules) or that a socket on the host holds, and duplicates in the request.
func (b *builtinNet) checkPorts(podID string, maps []PortMapping) error {
	if len(maps) == 0 {
		return nil
	}
	existing, err := b.nft.list()
	if err != nil {
		return err
	}
	others, err := b.nft.othersTagged()
	if err != nil {
		return err
	}
	existing = append(existing, others...)
	for i, pm := range maps {
		for _, r := range existing {
			if r.proto == pm.Protocol && r.port == pm.HostPort && (r.hostIP == "" || pm.HostIP == "" || r.hostIP == pm.HostIP) {
				owner := "pod " + r.pod
				if r.table != "" {
					owner += " of another cradle instance (nftables table inet " + r.table + ")"
				}
				return fmt.Errorf("hostPort %d/%s is already mapped to %s: %w", pm.HostPort, pm.Protocol, owner, errdefs.ErrAlreadyExists)
			}
		}
		for _, o := range maps[:i] {
			if o.Protocol == pm.Protocol && o.HostPort == pm.HostPort && (o.HostIP == "" || pm.HostIP == "" || o.HostIP == pm.HostIP) {
				return fmt.Errorf("hostPort %d/%s is mapped twice by pod %s: %w", pm.HostPort, pm.Protocol, podID, errdefs.ErrAlreadyExists)
			}
		}
	}
	return WithNetNS(b.m.hostPath, func() error {
		for _, pm := range maps {
			if err := probePort(pm); err != nil {
				return err
			}
		}
		return nil
	})
}

// probePort binds the host port for a moment: if a socket on the host
// holds it, traffic for it would be stolen from (or by) the pod.
func probePort(pm PortMapping) error {
	addr := net.JoinHostPort(pm.HostIP, fmt.Sprint(pm.HostPort))
	var err error
	if pm.Protocol == "udp" {
		var c net.PacketConn
		if c, err = net.ListenPacket("udp", addr); err == nil {
			_ = c.Close()
		}
	} else {
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			_ = l.Close()
		}
	}
	switch {
	case err == nil, errors.Is(err, unix.EADDRNOTAVAIL):
		return nil // free, or a host IP not (yet) on this host
	case errors.Is(err, unix.EADDRINUSE):
		return fmt.Errorf("hostPort %d/%s is in use by a socket on the host: %w", pm.HostPort, pm.Protocol, errdefs.ErrAlreadyExists)
	default:
		return fmt.Errorf("probe hostPort %d/%s: %w", pm.HostPort, pm.Protocol, err)
	}
}

// teardown undoes setup from the record: rules, veth, leases.
func (b *builtinNet) teardown(_ context.Context, rec *record) error {
	var errs []error
	errs = append(errs, b.nft.remove(func(p string) bool { return p == rec.PodID }))
	if rec.Veth != "" {
		errs = append(errs, b.deleteVeth(rec.Veth))
	}
	var known []netip.Addr
	if rec.Complete {
		for _, s := range rec.IPs {
			if ip, err := netip.ParseAddr(s); err == nil {
				known = append(known, ip)
			}
		}
	}
	errs = append(errs, b.ipam.release(rec.PodID, known))
	return errors.Join(errs...)
}

// sweep removes what no live pod owns: leases, hostport rules and pod veths
// (links named vethPrefix… enslaved to the bridge).
func (b *builtinNet) sweep(ctx context.Context, alive map[string]bool) error {
	var errs []error
	errs = append(errs, b.ipam.reclaim(alive))
	errs = append(errs, b.nft.remove(func(p string) bool { return !alive[p] }))
	want := make(map[string]bool, len(alive))
	for id := range alive {
		want[vethName(id)] = true
	}
	links, err := b.m.host.LinkList()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list host links: %w", err))...)
	}
	br, err := b.m.host.LinkByName(b.bridge)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("bridge %s: %w", b.bridge, err))...)
	}
	for _, l := range links {
		a := l.Attrs()
		if l.Type() != "veth" || a.MasterIndex != br.Attrs().Index || !strings.HasPrefix(a.Name, vethPrefix) || want[a.Name] {
			continue
		}
		b.m.log.InfoContext(ctx, "removing orphaned pod veth", "link", a.Name)
		errs = append(errs, b.deleteVeth(a.Name))
	}
	return errors.Join(errs...)
}

func ipNet(ip netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(bits, ip.BitLen())}
}

func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
