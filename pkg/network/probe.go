package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/containernetworking/cni/libcni"
	"github.com/cradle-runtime/cradle/pkg/osthread"
	"golang.org/x/sys/unix"
)

// ProbeNftables writes the built-in network's whole nftables table (NAT
// chains, fib, ct, masquerade, the loopback guard) and a hostPort DNAT
// rule, both address families, with the code the network itself runs, in
// a network namespace made for the probe and dropped after it: it tells
// whether this kernel can hold the built-in network's rules without
// touching the host's ruleset.
func ProbeNftables() error {
	fd, err := throwawayNetNS()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	n := nftRules{nsFD: fd, table: TableName("probe0"), bridge: "probe0", masquerade: true,
		subnets: []netip.Prefix{netip.MustParsePrefix("10.88.0.0/16"), netip.MustParsePrefix("fd88::/64")}}
	if err := n.ensure(); err != nil {
		return err
	}
	return n.add("probe", []PortMapping{{Protocol: "tcp", ContainerPort: 80, HostPort: 8080}},
		[]netip.Addr{netip.MustParseAddr("10.88.0.2"), netip.MustParseAddr("fd88::2")})
}

// throwawayNetNS returns a file descriptor of a new, unnamed network
// namespace, which ends when the descriptor is closed. It is made on a
// thread that is thrown away (osthread.Run).
func throwawayNetNS() (int, error) {
	fd := -1
	err := osthread.Run(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("new network namespace: %w", err)
		}
		var err error
		fd, err = unix.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open the new network namespace: %w", err)
		}
		return nil
	})
	return fd, err
}

// CNIConfig is the CNI network configuration in use, as CheckCNI found it.
type CNIConfig struct {
	File       string   // the file it was read from
	Name       string   // the network's name
	CNIVersion string   // the configuration's cniVersion
	Plugins    []string // plugin types, in chain order
	Skipped    []error  // files before it, by name, that are not usable
}

// CheckCNI finds the CNI configuration cni mode uses: the first file of
// confDir, by name, that reads as a configuration list (or a single-plugin
// configuration) whose plugins are all in binDirs; and then asks each of
// its plugins (their VERSION command) whether it supports the
// configuration's cniVersion.
func CheckCNI(ctx context.Context, confDir string, binDirs []string) (CNIConfig, error) {
	c := &cniNet{confDir: confDir, binDirs: binDirs}
	files, _, err := c.scan()
	if err != nil {
		return CNIConfig{}, err
	}
	if len(files) == 0 {
		return CNIConfig{}, fmt.Errorf("no *.conflist, *.conf or *.json file in %s", confDir)
	}
	var skipped []error
	for _, f := range files {
		list, err := readConfList(f)
		if err == nil {
			err = c.checkPlugins(list)
		}
		if err != nil {
			skipped = append(skipped, fmt.Errorf("%s: %w", f, err))
			continue
		}
		out := CNIConfig{File: f, Name: list.Name, CNIVersion: list.CNIVersion, Skipped: skipped}
		for _, p := range list.Plugins {
			out.Plugins = append(out.Plugins, p.Network.Type)
		}
		if _, err := libcni.NewCNIConfig(binDirs, nil).ValidateNetworkList(ctx, list); err != nil {
			return out, fmt.Errorf("%s: %w", f, err)
		}
		return out, nil
	}
	return CNIConfig{Skipped: skipped}, fmt.Errorf("no usable CNI configuration in %s: %w", confDir, errors.Join(skipped...))
}
