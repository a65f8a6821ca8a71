package network

import (
	"fmt"
	"sort"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// InterfaceStats are one network interface's counters.
type InterfaceStats struct {
	Name                                    string
	RxBytes, RxPackets, RxErrors, RxDropped uint64
	TxBytes, TxPackets, TxErrors, TxDropped uint64
}

// LinkStats reads the counters of every interface in the network namespace
// at nsPath, sorted by name. It opens a netlink socket in the namespace; no
// thread of this process enters it.
func LinkStats(nsPath string) ([]InterfaceStats, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer func() { _ = ns.Close() }()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", nsPath, err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links in %s: %w", nsPath, err)
	}
	out := make([]InterfaceStats, 0, len(links))
	for _, l := range links {
		a := l.Attrs()
		st := InterfaceStats{Name: a.Name}
		if s := a.Statistics; s != nil {
			st.RxBytes, st.RxPackets, st.RxErrors, st.RxDropped = s.RxBytes, s.RxPackets, s.RxErrors, s.RxDropped
			st.TxBytes, st.TxPackets, st.TxErrors, st.TxDropped = s.TxBytes, s.TxPackets, s.TxErrors, s.TxDropped
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
