package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The built-in network keeps all its packet rules in one nftables table of
// its own, "inet cradle-<bridge>" (TableName), which no other instance
// touches:
//
//	prerouting  (nat, dstnat)  fib daddr type local jump hostports
//	output      (nat, -100)    fib daddr type local jump hostports
//	hostports                  one DNAT rule per pod mapping and address family
//	postrouting (nat, srcnat)  masquerade pod subnet → outside (when enabled);
//	                           masquerade 127.0.0.0/8 → pod subnet (hostPorts on localhost)
//	input       (filter)       drop new connections from the bridge to 127.0.0.0/8
//
// A hostPort reached on 127.0.0.1 is DNATed to the pod with its loopback
// source, which the kernel routes out of the bridge only with route_localnet
// set on it; the source is then masqueraded to the bridge's address. The
// input rule keeps pods from using route_localnet to reach the host's
// loopback services (CVE-2020-8558): only replies pass.
// Every hostports rule carries user data "cradle pod=<id> <proto> <hostIP|*>:<port>",
// which is how a pod's rules are found and removed exactly, and how hostPort
// conflicts between pods are detected from the kernel's own state, those of
// other instances' pods included (their tables are read, never written).
//
// One table per instance: the bridge is the host-global name that sets an
// instance's network apart (its leases, veths and rules all hang off it),
// so the table is named from it, and is the same across restarts. Two
// daemons with different bridges never flush, sweep or rewrite each
// other's rules. Tables named before that ("inet cradle", shared by every
// instance) are handled by migrateLegacy.
const (
	nftTablePrefix = "cradle-"
	nftHostPorts   = "hostports"
	nftTagPrefix   = "cradle pod="
)

// TableName is the nftables table (family inet) of the built-in network on
// bridge.
func TableName(bridge string) string { return nftTablePrefix + bridge }

// nftRules manages the table in the host network namespace.
type nftRules struct {
	nsFD       int
	table      string
	bridge     string
	subnets    []netip.Prefix
	masquerade bool
}

func (n nftRules) conn() (*nftables.Conn, error) {
	c, err := nftables.New(nftables.WithNetNSFd(n.nsFD))
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return c, nil
}

func (n nftRules) tbl() *nftables.Table {
	return &nftables.Table{Name: n.table, Family: nftables.TableFamilyINet}
}

func hostPortsChain(t *nftables.Table) *nftables.Chain {
	return &nftables.Chain{Name: nftHostPorts, Table: t}
}

// ensure creates the table and chains and (re)writes the base rules; the
// pod rules in hostports are left alone. It is idempotent.
func (n nftRules) ensure() error {
	c, err := n.conn()
	if err != nil {
		return err
	}
	t := c.AddTable(n.tbl())
	hp := c.AddChain(hostPortsChain(t))
	policy := nftables.ChainPolicyAccept
	base := func(name string, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		ch := c.AddChain(&nftables.Chain{Name: name, Table: t, Type: nftables.ChainTypeNAT, Hooknum: hook, Priority: prio, Policy: &policy})
		c.FlushChain(ch)
		return ch
	}
	for _, ch := range []*nftables.Chain{
		base("prerouting", nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest),
		base("output", nftables.ChainHookOutput, nftables.ChainPriorityNATDest),
	} {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: nativeU32(unix.RTN_LOCAL)},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: hp.Name},
		}})
	}
	post := base("postrouting", nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
	in := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	c.FlushChain(in)
	c.AddRule(&nftables.Rule{Table: t, Chain: in, Exprs: loopbackGuardExprs(n.bridge)})
	for _, s := range n.subnets {
		if s.Addr().Is4() {
			c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: localhostMasqExprs(s)})
		}
		// A pod reaching a hostPort that leads back into the pod subnet
		// (itself included) is masqueraded, so replies return the same way.
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: hairpinExprs(s)})
		if n.masquerade {
			c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: masqueradeExprs(s)})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("write nftables table %s: %w", n.table, err)
	}
	return nil
}

// present reports whether the table and its hostports chain exist.
func (n nftRules) present() error {
	c, err := n.conn()
	if err != nil {
		return err
	}
	if _, err := c.GetRules(n.tbl(), hostPortsChain(n.tbl())); err != nil {
		return fmt.Errorf("nftables chain %s/%s: %w", n.table, nftHostPorts, err)
	}
	return nil
}

// hostPortRule is one mapping as it is tagged in the kernel.
type hostPortRule struct {
	pod    string
	proto  string
	hostIP string // "" = any
	port   int32
	handle uint64
	table  string // set for another instance's rule (othersTagged)
}

func (r hostPortRule) tag() string {
	ip := r.hostIP
	if ip == "" {
		ip = "*"
	}
	return nftTagPrefix + r.pod + " " + r.proto + " " + ip + ":" + strconv.Itoa(int(r.port))
}

func parseTag(b []byte) (hostPortRule, bool) {
	s, ok := strings.CutPrefix(string(b), nftTagPrefix)
	if !ok {
		return hostPortRule{}, false
	}
	f := strings.Fields(s)
	if len(f) != 3 {
		return hostPortRule{}, false
	}
	i := strings.LastIndex(f[2], ":")
	if i < 0 {
		return hostPortRule{}, false
	}
	port, err := strconv.ParseUint(f[2][i+1:], 10, 16)
	if err != nil || port == 0 {
		return hostPortRule{}, false
	}
	ip := f[2][:i]
	if ip == "*" {
		ip = ""
	}
	return hostPortRule{pod: f[0], proto: f[1], hostIP: ip, port: int32(port)}, true
}

// list returns every tagged hostports rule of this instance's table.
func (n nftRules) list() ([]hostPortRule, error) {
	c, err := n.conn()
	if err != nil {
		return nil, err
	}
	return listTagged(c, n.table)
}

// listTagged returns the tagged hostports rules of table; a missing table
// has none.
func listTagged(c *nftables.Conn, table string) ([]hostPortRule, error) {
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyINet}
	rules, err := c.GetRules(t, hostPortsChain(t))
	if errNoTable(err) {
		return nil, nil // nothing was ever installed
	}
	if err != nil {
		return nil, fmt.Errorf("list nftables hostport rules of table %s: %w", table, err)
	}
	var out []hostPortRule
	for _, r := range rules {
		if hr, ok := parseTag(r.UserData); ok {
			hr.handle = r.Handle
			out = append(out, hr)
		}
	}
	return out, nil
}

// add installs the DNAT rules of one pod in a single transaction: for each
// mapping, one rule per pod address of the host IP's family (both families
// when the host IP is empty).
func (n nftRules) add(podID string, maps []PortMapping, podIPs []netip.Addr) error {
	c, err := n.conn()
	if err != nil {
		return err
	}
	t := n.tbl()
	hp := hostPortsChain(t)
	for _, pm := range maps {
		var hostIP netip.Addr
		if pm.HostIP != "" {
			hostIP, _ = netip.ParseAddr(pm.HostIP) // validated by Setup
		}
		tag := hostPortRule{pod: podID, proto: pm.Protocol, hostIP: pm.HostIP, port: pm.HostPort}.tag()
		for _, podIP := range podIPs {
			if hostIP.IsValid() && hostIP.Is4() != podIP.Is4() {
				continue
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: hp, UserData: []byte(tag), Exprs: dnatExprs(pm, hostIP, podIP)})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("add hostport rules of pod %s: %w", podID, err)
	}
	return nil
}

// remove deletes every rule tagged with a pod for which drop is true.
func (n nftRules) remove(drop func(pod string) bool) error {
	rules, err := n.list()
	if err != nil {
		return err
	}
	c, err := n.conn()
	if err != nil {
		return err
	}
	t := n.tbl()
	hp := hostPortsChain(t)
	dirty := false
	for _, r := range rules {
		if drop(r.pod) {
			if err := c.DelRule(&nftables.Rule{Table: t, Chain: hp, Handle: r.handle}); err != nil {
				return fmt.Errorf("delete hostport rule %q: %w", r.tag(), err)
			}
			dirty = true
		}
	}
	if !dirty {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete hostport rules: %w", err)
	}
	return nil
}

func dnatExprs(pm PortMapping, hostIP, podIP netip.Addr) []expr.Any {
	proto := byte(unix.IPPROTO_TCP)
	if pm.Protocol == "udp" {
		proto = unix.IPPROTO_UDP
	}
	nfproto, daddrOff, alen := byte(unix.NFPROTO_IPV4), uint32(16), uint32(4)
	if podIP.Is6() {
		nfproto, daddrOff, alen = unix.NFPROTO_IPV6, 24, 16
	}
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
	if hostIP.IsValid() {
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: daddrOff, Len: alen},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: hostIP.AsSlice()})
	}
	return append(e,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: beU16(uint16(pm.HostPort))},
		&expr.Immediate{Register: 1, Data: podIP.AsSlice()},
		&expr.Immediate{Register: 2, Data: beU16(uint16(pm.ContainerPort))},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(nfproto), RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	)
}

// masqueradeExprs: meta nfproto F, saddr in s, daddr not in s, masquerade.
func masqueradeExprs(s netip.Prefix) []expr.Any {
	return append(subnetMatch(s, expr.CmpOpNeq), &expr.Masq{})
}

// hairpinExprs: ct status dnat, saddr in s, daddr in s, masquerade.
func hairpinExprs(s netip.Prefix) []expr.Any {
	e := []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: nativeU32(ctStatusDNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
	e = append(e, subnetMatch(s, expr.CmpOpEq)...)
	return append(e, &expr.Masq{})
}

// subnetMatch: meta nfproto F, saddr in s, daddr (op) s.
func subnetMatch(s netip.Prefix, daddrOp expr.CmpOp) []expr.Any {
	nfproto, saddrOff, daddrOff, alen := byte(unix.NFPROTO_IPV4), uint32(12), uint32(16), uint32(4)
	if s.Addr().Is6() {
		nfproto, saddrOff, daddrOff, alen = unix.NFPROTO_IPV6, 8, 24, 16
	}
	mask := prefixMask(s)
	netw := s.Addr().AsSlice()
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: saddrOff, Len: alen},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: alen, Mask: mask, Xor: make([]byte, alen)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: netw},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: daddrOff, Len: alen},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: alen, Mask: mask, Xor: make([]byte, alen)},
		&expr.Cmp{Op: daddrOp, Register: 1, Data: netw},
	}
}

// loopback4 is 127.0.0.0/8.
var loopback4 = netip.MustParsePrefix("127.0.0.0/8")

// localhostMasqExprs: ip saddr 127.0.0.0/8 ip daddr s masquerade.
func localhostMasqExprs(s netip.Prefix) []expr.Any {
	return append(addrMatch(loopback4, 12), append(addrMatch(s, 16), &expr.Masq{})...)
}

// loopbackGuardExprs: iifname bridge ip daddr 127.0.0.0/8 ct state
// != established,related drop.
func loopbackGuardExprs(bridge string) []expr.Any {
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(bridge)},
	}
	e = append(e, addrMatch(loopback4, 16)...)
	mask := nativeU32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED)
	return append(e,
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: make([]byte, 4)},
		&expr.Verdict{Kind: expr.VerdictDrop})
}

// addrMatch: meta nfproto ipv4, the IPv4 address at offset off (12 saddr,
// 16 daddr) in p.
func addrMatch(p netip.Prefix, off uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: prefixMask(p), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

// ifname is an interface name as nftables compares it (NUL-padded).
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// ctStatusDNAT is IPS_DST_NAT of the conntrack status bits.
const ctStatusDNAT = 1 << 5

func prefixMask(p netip.Prefix) []byte {
	m := make([]byte, p.Addr().BitLen()/8)
	for i := 0; i < p.Bits(); i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

func beU16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func nativeU32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// errNoTable reports whether err means the cradle table does not exist.
func errNoTable(err error) bool { return errors.Is(err, unix.ENOENT) }
