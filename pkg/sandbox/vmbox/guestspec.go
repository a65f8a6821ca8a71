package vmbox

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/agent/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Bind is a host path the guest needs: bind-mounted at Rel under the pod's
// shared directory, which the guest sees at api.GuestSharedDir.
type Bind struct {
	Source   string // host path (a directory or a file)
	Rel      string // under the shared directory
	ReadOnly bool
}

// GuestPaths place one container in the shared directory.
type GuestPaths struct {
	ContainerID string
	PodID       string
	// Rootfs is the host path of the container's mounted root.
	Rootfs string
}

// containerRel is where a container's binds live under the shared
// directory: one directory per container, removed with it.
func containerRel(id string) string { return "c/" + id }

// guestPath is rel under the shared directory, as the guest sees it.
func guestPath(rel string) string { return path.Join(api.GuestSharedDir, rel) }

// GuestSpec turns the spec the engine built for a container (host paths,
// the pod's pinned namespaces) into the spec the agent runs in the guest,
// and lists the binds that make its paths real. Pure.
//
//   - the root and every bind-mounted host path reach the guest through
//     the shared directory (virtiofs);
//   - /dev/shm is the pod's tmpfs in the guest;
//   - the guest is the pod: its network and IPC namespaces are the pod's,
//     so the container joins them (no entry); UTS is a new namespace with
//     the spec's hostname; a PID namespace path (TARGET mode) names a guest
//     process and is kept; the container has a cgroup namespace of its own;
//   - the cgroup is one of the guest's, under /pods/<pod id>;
//   - mount propagation to or from the host cannot cross virtiofs: asking
//     for it is InvalidArgument.
func GuestSpec(host *specs.Spec, p GuestPaths) (*specs.Spec, []Bind, error) {
	s := *host
	root := Bind{Source: p.Rootfs, Rel: containerRel(p.ContainerID) + "/rootfs"}
	s.Root = &specs.Root{Path: guestPath(root.Rel)}
	if host.Root != nil {
		s.Root.Readonly = host.Root.Readonly
	}
	binds := []Bind{root}
	s.Mounts = make([]specs.Mount, 0, len(host.Mounts))
	for i, m := range host.Mounts {
		gm, b, err := guestMount(m, p.ContainerID, i)
		if err != nil {
			return nil, nil, err
		}
		if b != nil {
			binds = append(binds, *b)
		}
		s.Mounts = append(s.Mounts, gm)
	}
	s.Hooks = nil // host hooks cannot run in the guest
	if host.Linux != nil {
		l := *host.Linux
		l.Namespaces = guestNamespaces(host.Linux.Namespaces)
		l.CgroupsPath = path.Join("/pods", p.PodID, p.ContainerID)
		l.Resources = GuestResources(host.Linux.Resources)
		l.Sysctl = guestSysctls(host.Linux.Sysctl)
		// Host device nodes mean nothing in the guest: a privileged
		// container has the guest's (as Kata's
		// privileged_without_host_devices); CreateContainer refuses
		// devices a config asks for.
		l.Devices = nil
		if l.RootfsPropagation == "shared" || l.RootfsPropagation == "rshared" {
			l.RootfsPropagation = ""
		}
		s.Linux = &l
	}
	return &s, binds, nil
}

// guestMount maps one mount of the host spec.
func guestMount(m specs.Mount, id string, i int) (specs.Mount, *Bind, error) {
	if m.Destination == "/dev/shm" {
		return specs.Mount{Destination: m.Destination, Type: "bind", Source: api.GuestShmDir,
			Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec"}}, nil, nil
	}
	if !isBind(m) {
		return m, nil, nil
	}
	for _, o := range m.Options {
		switch o {
		case "shared", "rshared", "slave", "rslave":
			return m, nil, fmt.Errorf("mount %q: propagation %s cannot reach into a microVM pod: %w",
				m.Destination, o, errdefs.ErrInvalidArgument)
		}
	}
	b := &Bind{Source: m.Source, Rel: containerRel(id) + "/m" + strconv.Itoa(i), ReadOnly: slices.Contains(m.Options, "ro")}
	m.Source = guestPath(b.Rel)
	return m, b, nil
}

func isBind(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

// guestNamespaces keeps the namespaces a container has of its own, and a
// PID namespace of a guest process; the pod's network, IPC and UTS
// namespace paths are host paths and the guest's own are the pod's.
func guestNamespaces(ns []specs.LinuxNamespace) []specs.LinuxNamespace {
	out := make([]specs.LinuxNamespace, 0, len(ns)+1)
	cgroupNS := false
	for _, n := range ns {
		cgroupNS = cgroupNS || n.Type == specs.CgroupNamespace
		switch n.Type {
		case specs.NetworkNamespace, specs.IPCNamespace:
			continue
		case specs.UTSNamespace:
			out = append(out, specs.LinuxNamespace{Type: n.Type})
		case specs.PIDNamespace:
			if n.Path != "" && !strings.HasPrefix(n.Path, "/proc/") {
				n.Path = "" // a host-pinned pod namespace: none in the guest
			}
			out = append(out, n)
		default:
			out = append(out, n)
		}
	}
	if !cgroupNS {
		// The guest runs cgroup2: a container sees its own cgroup as the
		// root of /sys/fs/cgroup, as on a cgroup v2 node.
		out = append(out, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	return out
}

// GuestResources drops what only cgroup v1 knows (the guest runs cgroup2,
// where crun refuses them): kernel memory limits and swappiness.
func GuestResources(r *specs.LinuxResources) *specs.LinuxResources {
	if r == nil || r.Memory == nil {
		return r
	}
	c := *r
	mem := *r.Memory
	mem.Kernel, mem.KernelTCP, mem.Swappiness = nil, nil, nil //nolint:staticcheck // v1 fields are what is dropped
	c.Memory = &mem
	return &c
}

// guestSysctls drops the network and IPC sysctls: the container shares the
// guest's network and IPC namespaces (the pod's), where the agent applied
// the pod's sysctls (SetupSandbox); crun refuses them without namespaces
// of the container's own.
func guestSysctls(in map[string]string) map[string]string {
	if in == nil {
		return nil
	}
	out := map[string]string{}
	for k, v := range in {
		if isPodSysctl(k) {
			continue
		}
		out[k] = v
	}
	return out
}

// isPodSysctl reports whether k belongs to the network or IPC namespace.
func isPodSysctl(k string) bool {
	for _, p := range []string{"net.", "kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue."} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}
