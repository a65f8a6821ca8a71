package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
)

// Pod file names under Pod.Dir; containers bind-mount them.
const (
	HostnameFile   = "hostname"
	HostsFile      = "hosts"
	ResolvConfFile = "resolv.conf"
)

const defaultHosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"

// writePodFiles writes the pod's hostname, hosts and resolv.conf. A host-
// network pod gets the host's hosts file and hostname; a pod with no DNS
// config gets the host's resolv.conf, as kubelet expects.
func writePodFiles(pod *Pod) error {
	cfg := pod.Config
	hostname := cfg.Hostname
	if cfg.Network == ctrconfig.NamespaceNode {
		h, err := os.Hostname()
		if err != nil {
			return err
		}
		hostname = h
	}
	// A hostname given is whole (the CRI edge checked it: kubelet's
	// setHostnameAsFQDN sends up to 64 characters); the pod name standing in
	// for one is cut to a DNS label's 63, as kubelet cuts it.
	if hostname == "" {
		hostname = cfg.Name
		if len(hostname) > 63 {
			hostname = hostname[:63]
		}
	}
	pod.Config.Hostname = hostname
	hosts := []byte(defaultHosts)
	if cfg.Network == ctrconfig.NamespaceNode {
		if b, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts = b
		}
	}
	resolv, err := resolvConf(cfg.DNS)
	if err != nil {
		return err
	}
	for name, content := range map[string][]byte{
		HostnameFile:   []byte(hostname + "\n"),
		HostsFile:      hosts,
		ResolvConfFile: resolv,
	} {
		if err := os.WriteFile(filepath.Join(pod.Dir, name), content, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

func resolvConf(dns *DNSConfig) ([]byte, error) {
	if dns == nil || (len(dns.Servers) == 0 && len(dns.Searches) == 0 && len(dns.Options) == 0) {
		b, err := os.ReadFile("/etc/resolv.conf")
		if os.IsNotExist(err) {
			return nil, nil
		}
		return b, err
	}
	var b strings.Builder
	for _, s := range dns.Servers {
		if strings.ContainsAny(s, " \t\n") {
			return nil, fmt.Errorf("DNS server %q: %w", s, errdefs.ErrInvalidArgument)
		}
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	for _, list := range []struct {
		key   string
		items []string
	}{{"search", dns.Searches}, {"options", dns.Options}} {
		if len(list.items) == 0 {
			continue
		}
		for _, it := range list.items {
			if strings.ContainsAny(it, " \t\n") {
				return nil, fmt.Errorf("DNS %s %q: %w", list.key, it, errdefs.ErrInvalidArgument)
			}
		}
		fmt.Fprintf(&b, "%s %s\n", list.key, strings.Join(list.items, " "))
	}
	return []byte(b.String()), nil
}
