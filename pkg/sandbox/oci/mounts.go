package oci

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Container paths of the files every container gets from its pod.
const (
	etcHosts      = "/etc/hosts"
	etcResolvConf = "/etc/resolv.conf"
	etcHostname   = "/etc/hostname"
	devShm        = "/dev/shm"
)

// mounts sets the default mounts, the pod's files and the CRI mounts,
// parents before children.
func (b *builder) mounts(context.Context) error {
	cri, rootPropagation, err := criMounts(b.in.Config.Mounts, b.in.Host)
	if err != nil {
		return err
	}
	ipcHost := b.namespaceModes().IPC == ctrconfig.NamespaceNode
	files := podFileMounts(b.in.Files, ipcHost, b.security().ReadonlyRootfs)
	if u := b.podUserNS(); u != nil {
		for i := range files {
			// In a user namespace the pod's files keep their owners through
			// idmapped mounts: the host's root is the container's. /dev/shm
			// needs none: the pod's is a tmpfs of the mapped root's (tmpfs
			// idmaps need Linux 6.3), the host's is the host's.
			if files[i].Destination != devShm {
				files[i].UIDMappings, files[i].GIDMappings = idMappings(u.UIDs), idMappings(u.GIDs)
			}
		}
	}
	b.spec.Mounts = mergeMounts(append(defaultMounts(b.privileged()), files...), cri)
	b.spec.Linux.RootfsPropagation = rootPropagation
	return nil
}

// defaultMounts are the kernel filesystems every container has.
func defaultMounts(privileged bool) []specs.Mount {
	sysMode := "ro"
	if privileged {
		sysMode = "rw"
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", sysMode}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", sysMode}},
	}
}

// podFileMounts bind the pod's hosts, resolv.conf, hostname and /dev/shm.
// The files follow the container's read-only rootfs, as in containerd.
func podFileMounts(f PodFiles, ipcHost, readonly bool) []specs.Mount {
	mode := "rw"
	if readonly {
		mode = "ro"
	}
	var out []specs.Mount
	for _, m := range []struct{ src, dst string }{
		{f.Hosts, etcHosts}, {f.ResolvConf, etcResolvConf}, {f.Hostname, etcHostname},
	} {
		if m.src != "" {
			out = append(out, bindMount(m.src, m.dst, "rprivate", mode))
		}
	}
	switch {
	case ipcHost:
		out = append(out, bindMount(devShm, devShm, "rprivate", "rw"))
	case f.Shm != "":
		out = append(out, bindMount(f.Shm, devShm, "rprivate", "rw"))
	default:
		out = append(out, specs.Mount{Destination: devShm, Type: "tmpfs", Source: "shm",
			Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}})
	}
	return out
}

func bindMount(src, dst string, opts ...string) specs.Mount {
	return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: append([]string{"rbind"}, opts...)}
}

// criMounts converts kubelet's mounts and says which rootfs propagation
// they need ("" for the runtime's default, private).
func criMounts(in []ctrconfig.Mount, host Host) ([]specs.Mount, string, error) {
	var (
		out         []specs.Mount
		propagation string
		seen        = make(map[string]bool)
	)
	for _, m := range in {
		sm, err := criMount(m, host)
		if err != nil {
			return nil, "", fmt.Errorf("mount %q: %w", m.ContainerPath, err)
		}
		if seen[sm.Destination] {
			return nil, "", fmt.Errorf("mount %q given twice: %w", sm.Destination, errdefs.ErrInvalidArgument)
		}
		seen[sm.Destination] = true
		switch m.Propagation {
		case ctrconfig.PropagationBidirectional:
			propagation = "rshared"
		case ctrconfig.PropagationHostToContainer:
			if propagation == "" {
				propagation = "rslave"
			}
		}
		out = append(out, sm)
	}
	return out, propagation, nil
}

// criMount converts one CRI mount into a bind mount.
func criMount(m ctrconfig.Mount, host Host) (specs.Mount, error) {
	if m.IsImageVolume() {
		// The engine mounts image volumes and hands them over as bind mounts.
		return specs.Mount{}, fmt.Errorf("image volume not mounted by the engine: %w", errdefs.ErrInternal)
	}
	src, dst := m.HostPath, m.ContainerPath
	if !path.IsAbs(src) || !path.IsAbs(dst) {
		return specs.Mount{}, fmt.Errorf("host path %q and container path %q must be absolute: %w", src, dst, errdefs.ErrInvalidArgument)
	}
	opts := []string{"rbind"}
	switch p := m.Propagation; p {
	case ctrconfig.PropagationPrivate:
		opts = append(opts, "rprivate")
	case ctrconfig.PropagationHostToContainer:
		opts = append(opts, "rslave")
	case ctrconfig.PropagationBidirectional:
		opts = append(opts, "rshared")
	default:
		return specs.Mount{}, fmt.Errorf("unknown propagation %v: %w", p, errdefs.ErrInvalidArgument)
	}
	mode, err := mountMode(m, host)
	if err != nil {
		return specs.Mount{}, err
	}
	extra, err := extraMountOptions(m.Options)
	if err != nil {
		return specs.Mount{}, err
	}
	return specs.Mount{
		Destination: path.Clean(dst),
		Type:        "bind",
		Source:      path.Clean(src),
		Options:     slices.Concat(opts, []string{mode}, extra),
		UIDMappings: idMappings(m.UIDMappings),
		GIDMappings: idMappings(m.GIDMappings),
	}, nil
}

// mountMode is "rw", "ro" or, for a recursive read-only mount, "rro".
func mountMode(m ctrconfig.Mount, host Host) (string, error) {
	switch {
	case !m.RecursiveReadOnly && m.Readonly:
		return "ro", nil
	case !m.RecursiveReadOnly:
		return "rw", nil
	case !m.Readonly:
		return "", fmt.Errorf("recursive read-only mount must be read-only: %w", errdefs.ErrInvalidArgument)
	case m.Propagation != ctrconfig.PropagationPrivate:
		return "", fmt.Errorf("recursive read-only mount needs private propagation: %w", errdefs.ErrInvalidArgument)
	case !host.RecursiveReadOnly:
		return "", fmt.Errorf("recursive read-only mounts are not supported on this host: %w", errdefs.ErrFailedPrecondition)
	}
	return "rro", nil
}

// extraMountOptions are the per-volume options kubelet may ask for; only
// options that restrict the mount are accepted.
func extraMountOptions(in []string) ([]string, error) {
	allowed := []string{"noexec", "nodev", "nosuid", "noatime", "nodiratime", "relatime", "strictatime"}
	for _, o := range in {
		if !slices.Contains(allowed, o) {
			return nil, fmt.Errorf("mount option %q is not allowed: %w", o, errdefs.ErrInvalidArgument)
		}
	}
	return slices.Clone(in), nil
}

// mergeMounts drops the defaults a CRI mount replaces (everything under
// /dev when /dev itself is mounted) and orders mounts so that a parent is
// mounted before its children.
func mergeMounts(defaults, cri []specs.Mount) []specs.Mount {
	replaced := make(map[string]bool, len(cri))
	for _, m := range cri {
		replaced[m.Destination] = true
	}
	var out []specs.Mount
	for _, m := range defaults {
		dst := path.Clean(m.Destination)
		if replaced[dst] || replaced["/dev"] && strings.HasPrefix(dst, "/dev/") {
			continue
		}
		out = append(out, m)
	}
	out = append(out, cri...)
	slices.SortStableFunc(out, func(a, b specs.Mount) int { return depth(a.Destination) - depth(b.Destination) })
	return out
}

// depth counts the elements of a clean absolute path ("/" has none).
func depth(p string) int {
	p = path.Clean(p)
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}
