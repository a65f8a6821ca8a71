package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// SetPodSubnets applies UpdateRuntimeConfig's pod CIDR: a comma-separated
// list of at most one IPv4 and one IPv6 subnet. In builtin mode a family's
// subnet is replaced only while no pod holds a lease in the old one
// (otherwise FailedPrecondition, and nothing changes); the bridge gateway
// and masquerade rules follow, and the same overlap check as at start
// applies. The change is not persisted: after a restart the configured
// subnet applies until kubelet sends the CIDR again. In CNI mode the
// subnet belongs to the CNI configuration and the call does nothing.
func (m *Manager) SetPodSubnets(ctx context.Context, cidrs string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bmu.Lock()
	b := m.builtin
	if b == nil && m.mode == config.NetworkAuto {
		m.podCIDR = cidrs // for the built-in network, if it is ever made
	}
	m.bmu.Unlock()
	if b == nil {
		m.log.InfoContext(ctx, "pod CIDR not applied: the CNI configuration owns the subnet", "cidr", cidrs)
		return nil
	}
	return b.setSubnets(ctx, cidrs)
}

func (b *builtinNet) setSubnets(ctx context.Context, cidrs string) error {
	next := slices.Clone(b.subnets)
	for _, c := range strings.Split(cidrs, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil || p.Masked() != p || (p.Addr().Is4() && p.Bits() > 30) || (p.Addr().Is6() && p.Bits() > 126) {
			return fmt.Errorf("pod CIDR %q: not a usable subnet: %w", c, errdefs.ErrInvalidArgument)
		}
		i := slices.IndexFunc(next, func(s netip.Prefix) bool { return s.Addr().Is4() == p.Addr().Is4() })
		if i < 0 {
			next = append(next, p)
		} else {
			next[i] = p
		}
	}
	if slices.Equal(next, b.subnets) {
		return nil
	}
	used, err := b.ipam.leases()
	if err != nil {
		return err
	}
	for _, old := range b.subnets {
		if slices.Contains(next, old) {
			continue
		}
		if n := countIn(used, old); n > 0 {
			return fmt.Errorf("pod subnet %s is in use by %d pod addresses; it can change once they are gone: %w", old, n, errdefs.ErrFailedPrecondition)
		}
	}
	if err := b.checkOverlap(next); err != nil {
		return err
	}
	// A bridge that is gone (deleted by hand) has no old gateway to remove:
	// ensureBridge below makes it afresh with the new ones.
	br, err := b.m.host.LinkByName(b.bridge)
	var notFound netlink.LinkNotFoundError
	if err != nil && !errors.As(err, &notFound) {
		return fmt.Errorf("bridge %s: %w", b.bridge, err)
	}
	for i, old := range b.subnets {
		if br != nil && !slices.Contains(next, old) {
			a := &netlink.Addr{IPNet: ipNet(b.gateways[i], old.Bits())}
			if err := b.m.host.AddrDel(br, a); err != nil && !errorsIsAny(err, unix.EADDRNOTAVAIL, unix.ENOENT) {
				return fmt.Errorf("remove old gateway %s: %w", a.IPNet, err)
			}
		}
	}
	b.subnets = next
	b.gateways = b.gateways[:0]
	for _, s := range next {
		b.gateways = append(b.gateways, s.Addr().Next())
	}
	b.nft.subnets = next
	if err := b.ensureBridge(); err != nil {
		return err
	}
	if err := b.nft.ensure(); err != nil {
		return err
	}
	b.m.log.InfoContext(ctx, "pod subnets changed", "subnets", next)
	return nil
}
