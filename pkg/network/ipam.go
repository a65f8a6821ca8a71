package network

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ipam leases addresses of the pod subnets, one file per leased address in
// dir, named by the address and holding the owning pod ID. A lease file is
// created exclusively and fsynced before the address is used, under an
// flock on dir/lock, so an address is never handed out twice, even across
// a crash: a crash can only leak a lease, and Reconcile reclaims leases of
// pods that no longer exist.
type ipam struct {
	dir string
}

const (
	leaseLock = "lock"
	leaseHint = "last" // the last address leased, so addresses rotate
)

// locked runs fn holding the IPAM lock.
func (a ipam) locked(fn func() error) error {
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		return fmt.Errorf("create ipam directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(a.dir, leaseLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open ipam lock: %w", err)
	}
	defer f.Close() // closing releases the flock
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock ipam: %w", err)
	}
	return fn()
}

// leases returns every lease: address → owning pod ID ("" if a crash left
// the file empty).
func (a ipam) leases() (map[netip.Addr]string, error) {
	ents, err := os.ReadDir(a.dir)
	if errors.Is(err, os.ErrNotExist) {
		return map[netip.Addr]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	out := make(map[netip.Addr]string, len(ents))
	for _, e := range ents {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue // lock, hint, stray files
		}
		b, err := os.ReadFile(filepath.Join(a.dir, e.Name()))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read lease %s: %w", ip, err)
		}
		out[ip] = strings.TrimSpace(string(b))
	}
	return out, nil
}

// allocate leases one free address of subnet to podID. reserved addresses
// (the gateway) are never leased; neither are the network and, for IPv4,
// broadcast addresses.
func (a ipam) allocate(podID string, subnet netip.Prefix, reserved netip.Addr) (netip.Addr, error) {
	var got netip.Addr
	err := a.locked(func() error {
		used, err := a.leases()
		if err != nil {
			return err
		}
		start := subnet.Addr()
		if b, err := os.ReadFile(filepath.Join(a.dir, leaseHint+familySuffix(subnet))); err == nil {
			if h, err := netip.ParseAddr(strings.TrimSpace(string(b))); err == nil && subnet.Contains(h) {
				start = h
			}
		}
		size := subnetSize(subnet)
		// Only len(used)+3 candidates can be taken or reserved, so a free one
		// is found within that many steps unless the subnet is full.
		limit := uint64(len(used)) + 4
		if size < limit {
			limit = size
		}
		ip := start
		for i := uint64(0); i < limit; i++ {
			ip = ip.Next()
			if !ip.IsValid() || !subnet.Contains(ip) {
				ip = subnet.Addr()
			}
			if ip == subnet.Addr() || ip == reserved || isBroadcast(ip, subnet) {
				continue
			}
			if _, taken := used[ip]; taken {
				continue
			}
			if err := a.create(ip, podID); err != nil {
				return err
			}
			got = ip
			_ = os.WriteFile(filepath.Join(a.dir, leaseHint+familySuffix(subnet)), []byte(ip.String()), 0o600)
			return nil
		}
		return fmt.Errorf("pod subnet %s has no free address (%d leased): %w", subnet, countIn(used, subnet), errdefs.ErrResourceExhausted)
	})
	return got, err
}

// create writes the lease file exclusively and durably.
func (a ipam) create(ip netip.Addr, podID string) error {
	p := filepath.Join(a.dir, ip.String())
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("lease %s: %w", ip, err)
	}
	_, werr := f.WriteString(podID)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(p)
		return fmt.Errorf("lease %s: %w", ip, err)
	}
	if err := syncDir(a.dir); err != nil {
		os.Remove(p)
		return fmt.Errorf("lease %s: %w", ip, err)
	}
	return nil
}

// release frees every lease held by podID. With known addresses (from a
// complete record) only those files are read; otherwise every lease is.
func (a ipam) release(podID string, known []netip.Addr) error {
	return a.locked(func() error {
		if len(known) > 0 {
			used := make(map[netip.Addr]string, len(known))
			for _, ip := range known {
				b, err := os.ReadFile(filepath.Join(a.dir, ip.String()))
				if err == nil {
					used[ip] = strings.TrimSpace(string(b))
				}
			}
			return a.removeWhere(used, func(owner string) bool { return owner == podID })
		}
		used, err := a.leases()
		if err != nil {
			return err
		}
		return a.removeWhere(used, func(owner string) bool { return owner == podID })
	})
}

// reclaim frees every lease whose owner is not in live.
func (a ipam) reclaim(live map[string]bool) error {
	return a.locked(func() error {
		used, err := a.leases()
		if err != nil {
			return err
		}
		return a.removeWhere(used, func(owner string) bool { return !live[owner] })
	})
}

func (a ipam) removeWhere(used map[netip.Addr]string, match func(owner string) bool) error {
	var errs []error
	removed := false
	for ip, owner := range used {
		if !match(owner) {
			continue
		}
		if err := os.Remove(filepath.Join(a.dir, ip.String())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("release lease %s: %w", ip, err))
		}
		removed = true
	}
	if removed {
		errs = append(errs, syncDir(a.dir))
	}
	return errors.Join(errs...)
}

func familySuffix(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "4"
	}
	return "6"
}

// subnetSize is the number of addresses in p, saturated at 2^63.
func subnetSize(p netip.Prefix) uint64 {
	host := p.Addr().BitLen() - p.Bits()
	if host >= 63 {
		return 1 << 63
	}
	return 1 << host
}

func isBroadcast(ip netip.Addr, p netip.Prefix) bool {
	if !ip.Is4() {
		return false
	}
	b := p.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= (1 << (32 - p.Bits())) - 1
	return ip == netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func countIn(used map[netip.Addr]string, p netip.Prefix) int {
	n := 0
	for ip := range used {
		if p.Contains(ip) {
			n++
		}
	}
	return n
}
