package cri

import (
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// toUserNS translates a pod's user namespace options (kubelet's
// hostUsers: false) into the ID mappings of the pod's user namespace; nil
// runs the pod with the host's users. NamespaceMode's zero value is POD:
// only explicit options ask for a user namespace. Modes CONTAINER and
// TARGET have no meaning for a user namespace (kubelet never sends them)
// and a pod in a user namespace cannot share the host's network, PID or
// IPC namespace (kubelet refuses hostUsers: false with any of them).
func toUserNS(ns *runtime.NamespaceOption) (*ctrconfig.IDMappings, error) {
	u := ns.GetUsernsOptions()
	if u == nil {
		return nil, nil
	}
	switch u.GetMode() {
	case runtime.NamespaceMode_NODE:
		return nil, nil
	case runtime.NamespaceMode_POD:
	default:
		return nil, fmt.Errorf("user namespace mode %v is not supported (POD or NODE): %w", u.GetMode(), errdefs.ErrInvalidArgument)
	}
	for kind, m := range map[string]runtime.NamespaceMode{"network": ns.GetNetwork(), "PID": ns.GetPid(), "IPC": ns.GetIpc()} {
		if m == runtime.NamespaceMode_NODE {
			return nil, fmt.Errorf("a pod in a user namespace cannot use the host's %s namespace: %w", kind, errdefs.ErrInvalidArgument)
		}
	}
	uids, err := idMapping("uid", u.GetUids())
	if err != nil {
		return nil, err
	}
	gids, err := idMapping("gid", u.GetGids())
	if err != nil {
		return nil, err
	}
	return &ctrconfig.IDMappings{UIDs: []ctrconfig.IDMapping{uids}, GIDs: []ctrconfig.IDMapping{gids}}, nil
}

// fromUserNS is the user namespace options PodSandboxStatus reports: the
// mappings of the pod's own, NODE where its config named the host's, nil
// where it said nothing.
func fromUserNS(c sandbox.PodConfig) *runtime.UserNamespace {
	switch {
	case c.UserNS != nil:
		return &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: fromIDMappings(c.UserNS.UIDs), Gids: fromIDMappings(c.UserNS.GIDs)}
	case c.UserNSNode:
		return &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}
	}
	return nil
}

// idMapping checks the one mapping kubelet sends for uids or gids: it maps
// the container's root (a user namespace whose root is unmapped runs
// nothing) to a range of host IDs that does not hold the host's root and
// does not wrap.
func idMapping(kind string, ms []*runtime.IDMapping) (ctrconfig.IDMapping, error) {
	if len(ms) != 1 {
		return ctrconfig.IDMapping{}, fmt.Errorf("user namespace: %d %s mappings, want exactly one: %w", len(ms), kind, errdefs.ErrInvalidArgument)
	}
	m := ms[0]
	switch {
	case m.GetContainerId() != 0:
		return ctrconfig.IDMapping{}, fmt.Errorf("user namespace: the %s mapping must start at container ID 0, not %d: %w", kind, m.GetContainerId(), errdefs.ErrInvalidArgument)
	case m.GetLength() == 0:
		return ctrconfig.IDMapping{}, fmt.Errorf("user namespace: the %s mapping is empty: %w", kind, errdefs.ErrInvalidArgument)
	case m.GetHostId() == 0:
		return ctrconfig.IDMapping{}, fmt.Errorf("user namespace: the %s mapping holds the host's root: %w", kind, errdefs.ErrInvalidArgument)
	case uint64(m.GetHostId())+uint64(m.GetLength()) > 1<<32-1:
		return ctrconfig.IDMapping{}, fmt.Errorf("user namespace: the %s mapping %d+%d overflows: %w", kind, m.GetHostId(), m.GetLength(), errdefs.ErrInvalidArgument)
	}
	return ctrconfig.IDMapping{ContainerID: 0, HostID: m.GetHostId(), Size: m.GetLength()}, nil
}
