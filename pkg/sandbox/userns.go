package sandbox

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
)

// Pods in a user namespace (kubelet's hostUsers: false).
//
// The pod's user namespace is made by its backend (StartPod), with the
// pod's network, IPC and UTS namespaces inside it, so that the user
// namespace owns them: the containers' root may then mount sysfs and
// mqueue, set the hostname and change its network's sysctls, as it could in
// a pod of its own. A network namespace made earlier by the engine would be
// owned by the host's user namespace, so the engine leaves it to the
// backend, which sets pod.NetNS; the network is wired after StartPod as
// for every pod. Every container of the pod joins the one user namespace
// (pod.NS["user"]).
//
// Files keep their owners on disk, with no chown of image layers: the
// rootfs's lower layers are idmapped mounts (overlayfs itself cannot be
// idmapped; containerd's mount package makes idmapped clones of the
// lowerdirs, mounts the overlay over them and drops the clones), and only
// the empty upper directory's root is given to the mapped root, so the
// container's root owns "/" and what it writes lands on disk as the
// mapped IDs. Volumes are idmapped by the runtime as kubelet asks
// (Mount.uid_mappings), the pod's hosts, hostname and resolv.conf too
// (see oci), and the pod's /dev/shm is a tmpfs of the mapped root's.

// checkUserNS refuses a pod in a user namespace on a handler whose runtime
// cannot run one (Status reports the handler's user_namespaces feature
// from the same probe, so kubelet never sends such a pod).
func (m *Manager) checkUserNS(handler string, cfg PodConfig) error {
	if cfg.UserNS == nil || m.opts.Features[handler].UserNamespaces {
		return nil
	}
	return fmt.Errorf("runtime handler %q does not support user namespaces (its OCI runtime reports no idmapped mounts): %w",
		handler, errdefs.ErrInvalidArgument)
}

// idmapRootfs makes the rootfs mounts of a container of a pod in a user
// namespace idmapped (nil u: mounts as they are): the overlay's lower layers
// are mapped, its upper directory's root is chowned to the mapped root; a
// bind mount (a snapshot without parents) is mapped as a whole.
func idmapRootfs(mounts []mount.Mount, u *ctrconfig.IDMappings) ([]mount.Mount, error) {
	if u == nil {
		return mounts, nil
	}
	out := slices.Clone(mounts)
	for i, m := range out {
		switch m.Type {
		case "overlay":
			upper := mountOption(m.Options, "upperdir=")
			if upper == "" {
				break // a read-only view: lower layers only
			}
			if err := os.Lchown(upper, int(u.UIDs[0].HostID), int(u.GIDs[0].HostID)); err != nil {
				return nil, fmt.Errorf("give the rootfs to the pod's root: %w", err)
			}
		case "bind", "rbind":
		default:
			return nil, fmt.Errorf("rootfs mount of type %q cannot be idmapped for a user namespace: %w", m.Type, errdefs.ErrFailedPrecondition)
		}
		out[i].Options = append(slices.Clone(m.Options), "uidmap="+mapOption(u.UIDs), "gidmap="+mapOption(u.GIDs))
	}
	return out, nil
}

// mountOption is the value of the option with prefix key ("" if none).
func mountOption(opts []string, key string) string {
	for _, o := range opts {
		if v, ok := strings.CutPrefix(o, key); ok {
			return v
		}
	}
	return ""
}

// mapOption is containerd's mount option form of mappings:
// "container:host:size,...".
func mapOption(ms []ctrconfig.IDMapping) string {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		parts = append(parts, fmt.Sprintf("%d:%d:%d", m.ContainerID, m.HostID, m.Size))
	}
	return strings.Join(parts, ",")
}
