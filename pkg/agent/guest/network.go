package guest

import (
	"bytes"
	"errors"
	"fmt"
	"net"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// SetupNetwork configures the guest's network as the host gives it: lo up,
// each NIC (found by its MAC, or by the MAC it was given already) renamed,
// re-addressed, sized and up, then the routes. Running it again converges.
// It acts on the network namespace of the calling thread.
func SetupNetwork(req *api.SetupNetworkRequest) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	for _, ifc := range req.Interfaces {
		if err := setupInterface(ifc); err != nil {
			return err
		}
	}
	for _, rt := range req.Routes {
		if err := addRoute(rt); err != nil {
			return err
		}
	}
	return nil
}

func setupInterface(ifc *api.Interface) error {
	mac, err := net.ParseMAC(ifc.Mac)
	if err != nil {
		return fmt.Errorf("interface %q: mac %q: %v: %w", ifc.Name, ifc.Mac, err, errdefs.ErrInvalidArgument)
	}
	var newMAC net.HardwareAddr
	if ifc.NewMac != "" {
		if newMAC, err = net.ParseMAC(ifc.NewMac); err != nil {
			return fmt.Errorf("interface %q: new mac %q: %v: %w", ifc.Name, ifc.NewMac, err, errdefs.ErrInvalidArgument)
		}
	}
	link, err := linkByMAC(mac, newMAC)
	if err != nil {
		return fmt.Errorf("interface %q: %w", ifc.Name, err)
	}
	if err := reshapeLink(link, ifc.Name, newMAC, int(ifc.Mtu)); err != nil {
		return fmt.Errorf("interface %q: %w", ifc.Name, err)
	}
	for _, a := range ifc.Addresses {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("interface %q: address %q: %v: %w", ifc.Name, a, err, errdefs.ErrInvalidArgument)
		}
		if err := netlink.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("interface %q: add %s: %w", ifc.Name, a, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("interface %q: set up: %w", ifc.Name, err)
	}
	return nil
}

// linkByMAC finds the NIC whose address is mac, or newMAC (given by an
// earlier call).
func linkByMAC(mac, newMAC net.HardwareAddr) (netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	for _, want := range []net.HardwareAddr{mac, newMAC} {
		for _, l := range links {
			if len(want) > 0 && bytes.Equal(l.Attrs().HardwareAddr, want) {
				return l, nil
			}
		}
	}
	return nil, fmt.Errorf("no link has address %s: %w", mac, errdefs.ErrNotFound)
}

// reshapeLink gives the link its name, address and MTU; a link must be
// down to be renamed.
func reshapeLink(link netlink.Link, name string, newMAC net.HardwareAddr, mtu int) error {
	a := link.Attrs()
	rename := name != "" && a.Name != name
	remac := len(newMAC) > 0 && !bytes.Equal(a.HardwareAddr, newMAC)
	if rename || remac {
		if err := netlink.LinkSetDown(link); err != nil {
			return fmt.Errorf("set down: %w", err)
		}
	}
	if remac {
		if err := netlink.LinkSetHardwareAddr(link, newMAC); err != nil {
			return fmt.Errorf("set mac %s: %w", newMAC, err)
		}
	}
	if rename {
		if err := netlink.LinkSetName(link, name); err != nil {
			return fmt.Errorf("rename %s: %w", a.Name, err)
		}
	}
	if mtu > 0 && a.MTU != mtu {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("set mtu %d: %w", mtu, err)
		}
	}
	return nil
}

// addRoute adds one route; one that exists already is fine.
func addRoute(rt *api.Route) error {
	route, err := toRoute(rt)
	if err != nil {
		return err
	}
	if err := netlink.RouteAdd(route); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("route %s via %q dev %q: %w", routeDst(rt), rt.Gateway, rt.Device, err)
	}
	return nil
}

func toRoute(rt *api.Route) (*netlink.Route, error) {
	route := &netlink.Route{Family: unix.AF_INET}
	if rt.Destination != "" {
		_, dst, err := net.ParseCIDR(rt.Destination)
		if err != nil {
			return nil, fmt.Errorf("route destination %q: %v: %w", rt.Destination, err, errdefs.ErrInvalidArgument)
		}
		route.Dst = dst
		if dst.IP.To4() == nil {
			route.Family = unix.AF_INET6
		}
	}
	if rt.Gateway != "" {
		gw := net.ParseIP(rt.Gateway)
		if gw == nil {
			return nil, fmt.Errorf("route gateway %q: %w", rt.Gateway, errdefs.ErrInvalidArgument)
		}
		route.Gw = gw
		if gw.To4() == nil {
			route.Family = unix.AF_INET6
		}
	} else {
		route.Scope = netlink.SCOPE_LINK
	}
	if rt.Device != "" {
		link, err := netlink.LinkByName(rt.Device)
		if err != nil {
			return nil, fmt.Errorf("route device %q: %w", rt.Device, err)
		}
		route.LinkIndex = link.Attrs().Index
	}
	return route, nil
}

func routeDst(rt *api.Route) string {
	if rt.Destination == "" {
		return "default"
	}
	return rt.Destination
}
