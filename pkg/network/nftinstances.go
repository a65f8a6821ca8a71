package network

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"

	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// nftLegacyTable is the table every instance shared before tables were
// per instance (TableName).
const nftLegacyTable = "cradle"

// othersTagged returns the hostport rules of every other cradle instance
// on this host (tables cradle-* and the legacy table), read only: a hostPort
// that another instance maps is as taken as one of our own pods, since both
// DNAT rules would see the same packets.
func (n nftRules) othersTagged() ([]hostPortRule, error) {
	c, err := n.conn()
	if err != nil {
		return nil, err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	var out []hostPortRule
	for _, t := range tables {
		if t.Name == n.table || (t.Name != nftLegacyTable && !strings.HasPrefix(t.Name, nftTablePrefix)) {
			continue
		}
		rules, err := listTagged(c, t.Name)
		if err != nil {
			return nil, err
		}
		for _, r := range rules {
			r.table = t.Name
			out = append(out, r)
		}
	}
	return out, nil
}

// migrateLegacy takes this instance's rules out of the legacy table "inet
// cradle" that every instance of an older cradle shared, and removes the
// table once nothing of anyone else is left in it.
//
// What in the legacy table is ours:
//   - hostports rules tagged with a pod this instance has a network record
//     for (own): records live in the instance's state dir and are written
//     before the rules, so every rule we made has one;
//   - the base chains (masquerade, hairpin, the loopback guard) belong to
//     whichever instance started last, as each start flushed and rewrote
//     them: they are ours when the guard names our bridge.
//
// So the table is deleted only when no other pod's hostport rule remains
// and its base rules are ours (or absent); otherwise it is left for the
// instance still using it (an older daemon beside this one), and our copies
// of base rules in it are harmless duplicates of the rules of our own table.
// An operator removes a table left by instances long gone with
// `nft delete table inet cradle`.
func (n nftRules) migrateLegacy(ctx context.Context, log *slog.Logger, own func(pod string) bool) error {
	legacy := nftRules{nsFD: n.nsFD, table: nftLegacyTable, bridge: n.bridge}
	rules, err := legacy.list()
	if err != nil {
		return err
	}
	var mine, others int
	for _, r := range rules {
		if own(r.pod) {
			mine++
		} else {
			others++
		}
	}
	if mine > 0 {
		log.InfoContext(ctx, "moving hostport rules out of the legacy nftables table", "table", nftLegacyTable, "rules", mine)
		if err := legacy.remove(own); err != nil {
			return fmt.Errorf("legacy table %s: %w", nftLegacyTable, err)
		}
	}
	c, err := n.conn()
	if err != nil {
		return err
	}
	guard, err := c.GetRules(legacy.tbl(), &nftables.Chain{Name: "input", Table: legacy.tbl()})
	if errNoTable(err) {
		return nil // no legacy table (or no input chain: nothing of anyone's)
	}
	if err != nil {
		return fmt.Errorf("read legacy table %s: %w", nftLegacyTable, err)
	}
	if others > 0 || (len(guard) > 0 && !guardsBridge(guard, n.bridge)) {
		log.InfoContext(ctx, "legacy nftables table is still used by another cradle instance; left alone",
			"table", nftLegacyTable, "other_pod_rules", others)
		return nil
	}
	c.DelTable(legacy.tbl())
	if err := c.Flush(); err != nil && !errNoTable(err) {
		return fmt.Errorf("delete legacy table %s: %w", nftLegacyTable, err)
	}
	log.InfoContext(ctx, "removed the legacy nftables table of this instance", "table", nftLegacyTable)
	return nil
}

// guardsBridge reports whether one of rules matches iifname bridge.
func guardsBridge(rules []*nftables.Rule, bridge string) bool {
	want := ifname(bridge)
	for _, r := range rules {
		for _, e := range r.Exprs {
			if cmp, ok := e.(*expr.Cmp); ok && bytes.Equal(cmp.Data, want) {
				return true
			}
		}
	}
	return false
}

// restoreRules gives every pod this instance networked, per its records,
// its hostport rules in the instance's table where they are missing: after
// the move from the legacy table, or after someone flushed the table. It
// returns the pods with a record.
func (b *builtinNet) restoreRules(ctx context.Context) ([]string, error) {
	ids, err := b.m.recs.list()
	if err != nil {
		return nil, err
	}
	have, err := b.nft.list()
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		rec, err := b.m.recs.load(id)
		if err != nil || rec == nil || !rec.Complete || rec.HostNetwork || rec.Mode != config.NetworkBuiltin {
			continue // an unreadable or partial record is Reconcile's business
		}
		maps := activeMappings(rec.PortMappings)
		if len(maps) == 0 || slices.ContainsFunc(have, func(r hostPortRule) bool { return r.pod == id }) {
			continue
		}
		var ips []netip.Addr
		for _, s := range rec.IPs {
			if ip, err := netip.ParseAddr(s); err == nil {
				ips = append(ips, ip)
			}
		}
		b.m.log.InfoContext(ctx, "restoring hostport rules", "pod", id, "table", b.nft.table)
		if err := b.nft.add(id, maps, ips); err != nil {
			return nil, err
		}
	}
	return ids, nil
}
