package network

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Tap is a tap device wired to a pod's eth0, for a microVM's NIC, and what
// the guest needs to take eth0's place.
type Tap struct {
	Name string
	MTU  int
	// MAC is eth0's address: the guest NIC should use it, so that peers'
	// neighbour entries for the pod IP stay right.
	MAC net.HardwareAddr
	// Addrs are eth0's addresses (CIDR), Routes the pod namespace's routes
	// through eth0.
	Addrs  []string
	Routes []TapRoute
}

// TapRoute is a route of the pod's namespace, for the guest.
type TapRoute struct {
	Dst string // CIDR; "" is the default route
	Gw  string // "" : on-link
}

// AttachTap creates a persistent tap device named name in the pod network
// namespace at nsPath and wires it to eth0 (CreateTap, then WireTap). On
// failure nothing is left.
func AttachTap(nsPath, name string) (Tap, error) {
	if err := CreateTap(nsPath, name); err != nil {
		return Tap{}, err
	}
	t, err := WireTap(nsPath, name)
	if err != nil {
		return Tap{}, errors.Join(err, DetachTap(nsPath, name))
	}
	return t, nil
}

// CreateTap creates a persistent tap device named name in the namespace
// at nsPath (flags NO_PI and VNET_HDR, as QEMU and Firecracker open it),
// up, wired to nothing yet: a VM can open it before the pod's eth0 exists.
func CreateTap(nsPath, name string) error {
	err := WithNetNS(nsPath, func() error {
		tap := &netlink.Tuntap{
			LinkAttrs: netlink.LinkAttrs{Name: name},
			Mode:      netlink.TUNTAP_MODE_TAP,
			Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_ONE_QUEUE,
		}
		if err := netlink.LinkAdd(tap); err != nil {
			return fmt.Errorf("create tap %s: %w", name, err)
		}
		if err := netlink.LinkSetUp(tap); err != nil {
			return errors.Join(fmt.Errorf("bring up tap %s: %w", name, err), netlink.LinkDel(tap))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tap in %s: %w", nsPath, err)
	}
	return nil
}

// WireTap gives the tap eth0's MTU and connects the two with tc: an
// ingress qdisc on each and a match-all u32 filter whose mirred action
// redirects every frame to the other's egress. It returns eth0's MAC,
// addresses and routes for the guest. Idempotent.
func WireTap(nsPath, name string) (Tap, error) {
	var t Tap
	err := WithNetNS(nsPath, func() error {
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return fmt.Errorf("pod eth0: %w", err)
		}
		t = Tap{Name: name, MTU: eth.Attrs().MTU, MAC: eth.Attrs().HardwareAddr}
		if err := wireTap(eth, name, t.MTU); err != nil {
			return err
		}
		t.Addrs, t.Routes, err = podAddressing(eth)
		return err
	})
	if err != nil {
		return Tap{}, fmt.Errorf("wire tap in %s: %w", nsPath, err)
	}
	return t, nil
}

// podAddressing reads eth's global addresses and the routes through it.
func podAddressing(eth netlink.Link) ([]string, []TapRoute, error) {
	addrs, err := netlink.AddrList(eth, netlink.FAMILY_ALL)
	if err != nil {
		return nil, nil, fmt.Errorf("addresses of eth0: %w", err)
	}
	var out []string
	for _, a := range addrs {
		if a.IP.IsGlobalUnicast() {
			out = append(out, a.IPNet.String())
		}
	}
	routes, err := netlink.RouteList(eth, netlink.FAMILY_ALL)
	if err != nil {
		return nil, nil, fmt.Errorf("routes of eth0: %w", err)
	}
	var rs []TapRoute
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL || (r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast()) {
			continue // the guest makes its own prefix routes
		}
		tr := TapRoute{}
		if r.Dst != nil {
			tr.Dst = r.Dst.String()
		}
		if r.Gw != nil {
			tr.Gw = r.Gw.String()
		}
		rs = append(rs, tr)
	}
	return out, rs, nil
}

func wireTap(eth netlink.Link, name string, mtu int) error {
	tap, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("look up tap %s: %w", name, err)
	}
	if err := netlink.LinkSetMTU(tap, mtu); err != nil {
		return fmt.Errorf("MTU of tap %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(tap); err != nil {
		return fmt.Errorf("bring up tap %s: %w", name, err)
	}
	for _, pair := range [][2]netlink.Link{{eth, tap}, {tap, eth}} {
		if err := redirect(pair[0], pair[1]); err != nil {
			return err
		}
	}
	return nil
}

// redirect sends every frame arriving on from out of to.
func redirect(from, to netlink.Link) error {
	idx := from.Attrs().Index
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Parent: netlink.HANDLE_INGRESS, Handle: netlink.MakeHandle(0xffff, 0)}}
	if err := netlink.QdiscReplace(q); err != nil {
		return fmt.Errorf("ingress qdisc on %s: %w", from.Attrs().Name, err)
	}
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: netlink.MakeHandle(0xffff, 0), Priority: 1, Protocol: unix.ETH_P_ALL},
		Actions:     []netlink.Action{netlink.NewMirredAction(to.Attrs().Index)},
	}
	if err := netlink.FilterAdd(f); err != nil {
		return fmt.Errorf("redirect %s → %s: %w", from.Attrs().Name, to.Attrs().Name, err)
	}
	return nil
}

// DetachTap removes the tap and eth0's ingress qdisc (with its filter). A
// missing tap is fine.
func DetachTap(nsPath, name string) error {
	return WithNetNS(nsPath, func() error { return detachTap(name) })
}

func detachTap(name string) error {
	var errs []error
	if eth, err := netlink.LinkByName("eth0"); err == nil {
		q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: eth.Attrs().Index, Parent: netlink.HANDLE_INGRESS, Handle: netlink.MakeHandle(0xffff, 0)}}
		if err := netlink.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("remove ingress qdisc of eth0: %w", err))
		}
	}
	if tap, err := netlink.LinkByName(name); err == nil {
		if err := netlink.LinkDel(tap); err != nil {
			errs = append(errs, fmt.Errorf("delete tap %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
