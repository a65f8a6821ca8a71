package oci

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// namespaces lists the container's namespaces: a new mount namespace, the
// pod's network, IPC and UTS namespaces unless they are the host's, the PID
// namespace its mode asks for, a cgroup namespace on cgroup v2 and the
// pod's user namespace when the pod has one.
func (b *builder) namespaces(context.Context) error {
	opts := b.namespaceModes()
	pod := b.in.Namespaces
	nss := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	if opts.Network != ctrconfig.NamespaceNode {
		// The pod's hostname lives with its network: host network, host UTS.
		nss = append(nss,
			specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: pod.Network},
			specs.LinuxNamespace{Type: specs.UTSNamespace, Path: pod.UTS})
		if pod.UTS == "" {
			b.spec.Hostname = b.in.Pod.Hostname
		}
	}
	if opts.IPC != ctrconfig.NamespaceNode {
		nss = append(nss, specs.LinuxNamespace{Type: specs.IPCNamespace, Path: pod.IPC})
	}
	pid, err := pidNamespace(opts.PID, pod)
	if err != nil {
		return err
	}
	if pid != nil {
		nss = append(nss, *pid)
	}
	if b.in.Host.CgroupV2 && !b.privileged() {
		nss = append(nss, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	userns, err := b.userNamespace()
	if err != nil {
		return err
	}
	if userns != nil {
		nss = append(nss, *userns)
	}
	b.spec.Linux.Namespaces = nss
	return nil
}

// pidNamespace is the container's PID namespace, or nil for the host's.
func pidNamespace(mode ctrconfig.NamespaceMode, pod PodNamespaces) (*specs.LinuxNamespace, error) {
	switch mode {
	case ctrconfig.NamespaceContainer:
		return &specs.LinuxNamespace{Type: specs.PIDNamespace}, nil
	case ctrconfig.NamespacePod:
		return &specs.LinuxNamespace{Type: specs.PIDNamespace, Path: pod.PID}, nil
	case ctrconfig.NamespaceNode:
		return nil, nil
	case ctrconfig.NamespaceTarget:
		if pod.TargetPID == "" {
			return nil, fmt.Errorf("PID mode TARGET without the target's namespace: %w", errdefs.ErrInvalidArgument)
		}
		return &specs.LinuxNamespace{Type: specs.PIDNamespace, Path: pod.TargetPID}, nil
	}
	return nil, fmt.Errorf("unknown PID namespace mode %v: %w", mode, errdefs.ErrInvalidArgument)
}

// userNamespace joins the pod's user namespace, which has the pod's ID
// mappings (runc warns when a spec gives both a path and mappings); without
// a path (a runtime that makes the namespace itself) the spec carries the
// mappings. The pod's options decide: kubelet repeats them for each
// container, and a container cannot have a user namespace of its own.
func (b *builder) userNamespace() (*specs.LinuxNamespace, error) {
	u := b.podUserNS()
	if u == nil {
		if c := b.security().Namespaces.UserNS; c != nil && c.Mode != ctrconfig.NamespaceNode {
			return nil, fmt.Errorf("container asks for user namespace mode %v in a pod with the host's users: %w", c.Mode, errdefs.ErrInvalidArgument)
		}
		return nil, nil
	}
	if !b.in.Host.UserNamespaces {
		return nil, fmt.Errorf("pod asks for a user namespace but its runtime handler has none: %w", errdefs.ErrInvalidArgument)
	}
	uids, gids := idMappings(u.UIDs), idMappings(u.GIDs)
	if len(uids) == 0 || len(gids) == 0 {
		return nil, fmt.Errorf("user namespace without uid and gid mappings: %w", errdefs.ErrInvalidArgument)
	}
	if b.in.Namespaces.User == "" {
		b.spec.Linux.UIDMappings, b.spec.Linux.GIDMappings = uids, gids
	}
	return &specs.LinuxNamespace{Type: specs.UserNamespace, Path: b.in.Namespaces.User}, nil
}

// podUserNS is the ID mappings of the pod's user namespace, nil when its
// containers run with the host's users.
func (b *builder) podUserNS() *ctrconfig.IDMappings { return b.in.Pod.UserNS }

// userNamespaced says whether the container runs in a user namespace.
func (b *builder) userNamespaced() bool { return b.podUserNS() != nil }

func idMappings(in []ctrconfig.IDMapping) []specs.LinuxIDMapping {
	var out []specs.LinuxIDMapping
	for _, m := range in {
		out = append(out, specs.LinuxIDMapping{ContainerID: m.ContainerID, HostID: m.HostID, Size: m.Size})
	}
	return out
}

// namespaceModes are the container's namespace modes. The network and IPC
// namespaces are the pod's whatever the container says (kubelet repeats the
// pod's modes; other clients, critest among them, may leave them out, and a
// container of a host-network pod must not get an empty network namespace
// of its own). The PID mode is the container's, except that a pod on the
// host's PID namespace keeps its containers there.
func (b *builder) namespaceModes() ctrconfig.Namespaces {
	pod, ctr := b.in.Pod, b.security().Namespaces
	out := ctrconfig.Namespaces{Network: pod.Network, IPC: pod.IPC, PID: ctr.PID, TargetID: ctr.TargetID}
	if pod.PID == ctrconfig.NamespaceNode {
		out.PID = ctrconfig.NamespaceNode
	}
	return out
}
