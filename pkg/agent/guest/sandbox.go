package guest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// defaultShmSize is the pod's /dev/shm when the host names no size.
const defaultShmSize = 64 << 20

// SetupSandbox makes the pod in the guest: hostname, the shared directory,
// the pod's /dev/shm and its sysctls. Idempotent.
func (s *Service) SetupSandbox(_ context.Context, req *api.SetupSandboxRequest) (*api.Empty, error) {
	if h := req.GetHostname(); h != "" {
		if err := unix.Sethostname([]byte(h)); err != nil {
			return nil, fmt.Errorf("hostname: %w", err)
		}
	}
	if tag := req.GetSharedTag(); tag != "" {
		if err := mountOnce(tag, api.GuestSharedDir, "virtiofs", 0, ""); err != nil {
			return nil, fmt.Errorf("shared directory: %w", err)
		}
	}
	size := req.GetShmSizeBytes()
	if size <= 0 {
		size = defaultShmSize
	}
	if err := mountOnce("shm", api.GuestShmDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC,
		"mode=1777,size="+strconv.FormatInt(size, 10)); err != nil {
		return nil, fmt.Errorf("pod /dev/shm: %w", err)
	}
	for k, v := range req.GetSysctls() {
		if strings.Contains(k, "..") || strings.ContainsAny(k, "/") && strings.Contains(k, ".") {
			return nil, fmt.Errorf("sysctl %q: %w", k, errdefs.ErrInvalidArgument)
		}
		p := filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/"))
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			return nil, fmt.Errorf("sysctl %s=%s: %w", k, v, err)
		}
	}
	s.Log.Info("sandbox set up", "hostname", req.GetHostname(), "shared", req.GetSharedTag())
	return &api.Empty{}, nil
}

// mountOnce mounts source at target unless something is mounted there.
func mountOnce(source, target, fstype string, flags uintptr, data string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	var st, parent unix.Stat_t
	if unix.Stat(target, &st) == nil && unix.Stat(filepath.Dir(target), &parent) == nil && st.Dev != parent.Dev {
		return nil
	}
	return unix.Mount(source, target, fstype, flags, data)
}

// SetupNetwork gives the guest the pod's addressing: loopback up, each NIC
// (found by its MAC) renamed, re-addressed and up, then the routes.
func (s *Service) SetupNetwork(_ context.Context, req *api.SetupNetworkRequest) (*api.Empty, error) {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	for _, ifc := range req.GetInterfaces() {
		if err := setupInterface(ifc); err != nil {
			return nil, err
		}
	}
	for _, r := range req.GetRoutes() {
		if err := addRoute(r); err != nil {
			return nil, err
		}
	}
	s.Log.Info("network set up", "interfaces", len(req.GetInterfaces()), "routes", len(req.GetRoutes()))
	return &api.Empty{}, nil
}

func setupInterface(ifc *api.Interface) error {
	link, err := linkByMAC(ifc.GetMac(), ifc.GetNewMac())
	if err != nil {
		return err
	}
	name := link.Attrs().Name
	_ = netlink.LinkSetDown(link)
	if m := ifc.GetNewMac(); m != "" {
		hw, err := net.ParseMAC(m)
		if err != nil {
			return fmt.Errorf("MAC %q: %w", m, errdefs.ErrInvalidArgument)
		}
		if err := netlink.LinkSetHardwareAddr(link, hw); err != nil {
			return fmt.Errorf("set MAC of %s: %w", name, err)
		}
	}
	if n := ifc.GetName(); n != "" && n != name {
		if err := netlink.LinkSetName(link, n); err != nil {
			return fmt.Errorf("rename %s to %s: %w", name, n, err)
		}
	}
	if ifc.GetMtu() > 0 {
		if err := netlink.LinkSetMTU(link, int(ifc.GetMtu())); err != nil {
			return fmt.Errorf("MTU of %s: %w", name, err)
		}
	}
	for _, a := range ifc.GetAddresses() {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("address %q: %w", a, errdefs.ErrInvalidArgument)
		}
		if err := netlink.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("address %s: %w", a, err)
		}
	}
	return netlink.LinkSetUp(link)
}

// linkByMAC finds the NIC that has mac (or, set up before, newMAC).
func linkByMAC(macs ...string) (netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	for _, m := range macs {
		for _, l := range links {
			if m != "" && strings.EqualFold(l.Attrs().HardwareAddr.String(), m) {
				return l, nil
			}
		}
	}
	return nil, fmt.Errorf("no NIC with MAC %v: %w", macs, errdefs.ErrNotFound)
}

func addRoute(r *api.Route) error {
	link, err := netlink.LinkByName(r.GetDevice())
	if err != nil {
		return fmt.Errorf("route device %q: %w", r.GetDevice(), err)
	}
	route := &netlink.Route{LinkIndex: link.Attrs().Index}
	if d := r.GetDestination(); d != "" {
		_, dst, err := net.ParseCIDR(d)
		if err != nil {
			return fmt.Errorf("route %q: %w", d, errdefs.ErrInvalidArgument)
		}
		route.Dst = dst
	}
	if g := r.GetGateway(); g != "" {
		route.Gw = net.ParseIP(g)
		if route.Gw == nil {
			return fmt.Errorf("gateway %q: %w", g, errdefs.ErrInvalidArgument)
		}
	} else {
		route.Scope = netlink.SCOPE_LINK
	}
	if err := netlink.RouteReplace(route); err != nil {
		return fmt.Errorf("route %v: %w", r, err)
	}
	return nil
}
