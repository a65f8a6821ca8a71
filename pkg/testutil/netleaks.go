package testutil

import (
	"errors"
	"os"
	"sort"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Links returns the sorted names of the links in the network namespace at
// nsPath.
func Links(t testing.TB, nsPath string) []string {
	t.Helper()
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		t.Fatalf("open netns %s: %v", nsPath, err)
	}
	defer func() { _ = ns.Close() }()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink in %s: %v", nsPath, err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		t.Fatalf("list links in %s: %v", nsPath, err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	sort.Strings(names)
	return names
}

// NftRuleTags returns the user data of every rule in chain of the inet
// table in the network namespace at nsPath, sorted; a missing table or
// chain has none.
func NftRuleTags(t testing.TB, nsPath, table, chain string) []string {
	t.Helper()
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		t.Fatalf("open netns %s: %v", nsPath, err)
	}
	defer func() { _ = ns.Close() }()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatalf("nftables in %s: %v", nsPath, err)
	}
	tb := &nftables.Table{Name: table, Family: nftables.TableFamilyINet}
	rules, err := c.GetRules(tb, &nftables.Chain{Name: chain, Table: tb})
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		t.Fatalf("list rules of %s/%s in %s: %v", table, chain, nsPath, err)
	}
	var tags []string
	for _, r := range rules {
		tags = append(tags, string(r.UserData))
	}
	sort.Strings(tags)
	return tags
}

// Files returns the sorted names in dir; a missing dir has none.
func Files(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatalf("list %s: %v", dir, err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}
