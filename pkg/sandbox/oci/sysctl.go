package oci

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
)

// ipcSysctls are the IPC-namespaced sysctls that are not under fs.mqueue.
func ipcSysctls() []string {
	return []string{
		"kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni",
		"kernel.shm_rmid_forced", "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni",
	}
}

// sysctlNamespace names the namespace a sysctl belongs to ("ipc", "net",
// "uts"), or "" when it is node-wide.
func sysctlNamespace(name string) string {
	switch {
	case strings.HasPrefix(name, "net."):
		return "net"
	case strings.HasPrefix(name, "fs.mqueue."):
		return "ipc"
	case name == "kernel.hostname" || name == "kernel.domainname":
		return "uts"
	}
	for _, s := range ipcSysctls() {
		if name == s {
			return "ipc"
		}
	}
	return ""
}

// normalizeSysctl turns the slash form (net/ipv4/ip_forward) into dots.
func normalizeSysctl(name string) string {
	if strings.Contains(name, "/") && !strings.Contains(name, ".") {
		return strings.ReplaceAll(name, "/", ".")
	}
	return name
}

// checkSysctls rejects sysctls that would change the node rather than the
// pod: node-wide ones, and namespaced ones whose namespace is the host's,
// as kubelet's admission does.
func checkSysctls(sysctls map[string]string, ns ctrconfig.Namespaces) (map[string]string, error) {
	if len(sysctls) == 0 {
		return nil, nil
	}
	hostNet := ns.Network == ctrconfig.NamespaceNode
	hostIPC := ns.IPC == ctrconfig.NamespaceNode
	out := make(map[string]string, len(sysctls))
	for name, value := range sysctls {
		n := normalizeSysctl(name)
		switch sysctlNamespace(n) {
		case "":
			return nil, fmt.Errorf("sysctl %q is not namespaced: %w", name, errdefs.ErrInvalidArgument)
		case "net", "uts":
			if hostNet {
				return nil, fmt.Errorf("sysctl %q is not allowed with host network: %w", name, errdefs.ErrInvalidArgument)
			}
		case "ipc":
			if hostIPC {
				return nil, fmt.Errorf("sysctl %q is not allowed with host IPC: %w", name, errdefs.ErrInvalidArgument)
			}
		}
		out[n] = value
	}
	return out, nil
}

// sysctls applies the pod's sysctls.
func (b *builder) sysctls(context.Context) error {
	s, err := checkSysctls(b.in.Pod.Sysctls, b.namespaceModes())
	if err != nil {
		return err
	}
	if len(s) > 0 {
		b.spec.Linux.Sysctl = maps.Clone(s)
	}
	return nil
}
