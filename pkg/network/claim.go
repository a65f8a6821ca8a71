package network

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
)

// The bridge is the one host-global name of an instance's network: its
// leases (<root>/network/ipam/<bridge>), its veths (swept from the bridge
// at start) and its nftables table (TableName) all hang off it. Two
// daemons given the same bridge would hand out the same addresses and
// remove each other's pods' veths, so an instance claims its bridge: the
// bridge's alias (ip link show: "alias cradle-instance ...") names the
// instance's root and the daemon's pid and start time. A bridge claimed by
// a live daemon of another root is refused (FailedPrecondition); a claim
// of a dead daemon, of this root, or none, is taken over. The check and
// the claim are not atomic: two daemons started in the same instant on one
// bridge can both pass.
const claimPrefix = "cradle-instance "

// claim is what a bridge's alias says of its instance.
type claim struct {
	root  string // the instance's root, or "sha256:<hex>" of a long one
	pid   int
	start uint64 // the process's start time (clock ticks since boot)
}

func (c claim) String() string {
	return fmt.Sprintf("%sroot=%s pid=%d start=%d", claimPrefix, c.root, c.pid, c.start)
}

func parseClaim(alias string) (claim, bool) {
	s, ok := strings.CutPrefix(alias, claimPrefix)
	if !ok {
		return claim{}, false
	}
	var c claim
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "root":
			c.root = v
		case "pid":
			c.pid, _ = strconv.Atoi(v)
		case "start":
			c.start, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	return c, c.root != "" && c.pid > 0
}

// claimRoot is root as a claim names it: itself, or a digest when it would
// not fit an alias (IFALIASZ) with spaces in it.
func claimRoot(root string) string {
	if len(root) <= 160 && !strings.ContainsAny(root, " \t\n") {
		return root
	}
	sum := sha256.Sum256([]byte(root))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// selfClaim is this daemon's claim for root.
func selfClaim(root string) claim {
	pid := os.Getpid()
	start, _ := procStart(pid)
	return claim{root: claimRoot(root), pid: pid, start: start}
}

// alive reports whether the claiming daemon still runs: its pid exists
// with the same start time.
func (c claim) alive() bool {
	start, err := procStart(c.pid)
	return err == nil && (c.start == 0 || start == c.start)
}

// procStart is field 22 of /proc/<pid>/stat, the process's start time.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command (field 2) is in parentheses and may hold anything.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, errors.New("malformed stat")
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22 is the 20th after the command
}

// checkClaim refuses a bridge that a live daemon of another root claims.
// A missing bridge is nobody's.
func (b *builtinNet) checkClaim(root string) error {
	l, err := b.m.host.LinkByName(b.bridge)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up bridge %s: %w", b.bridge, err)
	}
	c, ok := parseClaim(l.Attrs().Alias)
	if !ok || c.root == claimRoot(root) || !c.alive() {
		return nil
	}
	return fmt.Errorf("bridge %s is in use by the cradle daemon of root %s (pid %d); give each instance its own network.bridge and network.subnet: %w",
		b.bridge, c.root, c.pid, errdefs.ErrFailedPrecondition)
}

// writeClaim marks the bridge as this instance's.
func (b *builtinNet) writeClaim(l netlink.Link) error {
	want := selfClaim(b.root).String()
	if l.Attrs().Alias == want {
		return nil
	}
	if err := b.m.host.LinkSetAlias(l, want); err != nil {
		return fmt.Errorf("claim bridge %s: %w", b.bridge, err)
	}
	return nil
}
