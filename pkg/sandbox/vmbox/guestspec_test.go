package vmbox

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestGuestSpec(t *testing.T) {
	limit, kernel := int64(64<<20), int64(1<<20)
	host := &specs.Spec{
		Root:     &specs.Root{Path: "/var/lib/cradle/containers/c1/rootfs", Readonly: true},
		Hostname: "web",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/etc/hosts", Type: "bind", Source: "/run/cradle/pods/p1/hosts", Options: []string{"rbind", "rprivate", "rw"}},
			{Destination: "/dev/shm", Type: "bind", Source: "/run/cradle/pods/p1/shm", Options: []string{"rbind", "rprivate", "rw"}},
			{Destination: "/data", Source: "/srv/data", Options: []string{"rbind", "ro"}},
		},
		Hooks: &specs.Hooks{},
		Linux: &specs.Linux{
			Sysctl:      map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shmmax": "1", "kernel.domainname": "x"},
			CgroupsPath: "/cradle/pod-p1/c1",
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.NetworkNamespace, Path: "/run/netns/p1"},
				{Type: specs.IPCNamespace, Path: "/run/cradle/pods/p1/ns/ipc"},
				{Type: specs.UTSNamespace, Path: "/run/cradle/pods/p1/ns/uts"},
				{Type: specs.MountNamespace},
			},
			Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Kernel: &kernel}}, //nolint:staticcheck // a v1 field to drop
			// A privileged container's host devices: not the guest's.
			Devices: []specs.LinuxDevice{{Path: "/dev/kvm", Type: "c", Major: 10, Minor: 232}},
		},
	}
	got, binds, err := GuestSpec(host, GuestPaths{ContainerID: "c1", PodID: "p1", Rootfs: "/var/lib/cradle/containers/c1/rootfs"})
	if err != nil {
		t.Fatal(err)
	}
	want := &specs.Spec{
		Root:     &specs.Root{Path: "/run/cradle/shared/c/c1/rootfs", Readonly: true},
		Hostname: "web",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/etc/hosts", Type: "bind", Source: "/run/cradle/shared/c/c1/m1", Options: []string{"rbind", "rprivate", "rw"}},
			{Destination: "/dev/shm", Type: "bind", Source: "/run/cradle/shm", Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec"}},
			{Destination: "/data", Source: "/run/cradle/shared/c/c1/m3", Options: []string{"rbind", "ro"}},
		},
		Linux: &specs.Linux{
			Sysctl:      map[string]string{"kernel.domainname": "x"},
			CgroupsPath: "/pods/p1/c1",
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}},
		},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("guest spec (-want +got):\n%s", d)
	}
	wantBinds := []Bind{
		{Source: "/var/lib/cradle/containers/c1/rootfs", Rel: "c/c1/rootfs"},
		{Source: "/run/cradle/pods/p1/hosts", Rel: "c/c1/m1"},
		{Source: "/srv/data", Rel: "c/c1/m3", ReadOnly: true},
	}
	if d := cmp.Diff(wantBinds, binds); d != "" {
		t.Errorf("binds (-want +got):\n%s", d)
	}
	if host.Linux.Resources.Memory.Kernel == nil || host.Mounts[1].Source != "/run/cradle/pods/p1/hosts" { //nolint:staticcheck // the input keeps it
		t.Error("GuestSpec changed its input")
	}
}

func TestGuestSpecRefusesPropagation(t *testing.T) {
	host := &specs.Spec{Mounts: []specs.Mount{{Destination: "/m", Type: "bind", Source: "/srv", Options: []string{"rbind", "rshared"}}}}
	_, _, err := GuestSpec(host, GuestPaths{ContainerID: "c", PodID: "p", Rootfs: "/r"})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("err = %v, want InvalidArgument", err)
	}
}

func TestDeepestFirst(t *testing.T) {
	// In mount order, as mountinfo lists them.
	in := []string{"/p/shared", "/p/shared/c/x/rootfs", "/p/shared/logs", "/p/shared/c/x/rootfs/proc", "/p/shared/with space"}
	got := deepestFirst(in)
	want := []string{"/p/shared/c/x/rootfs/proc", "/p/shared/c/x/rootfs", "/p/shared/with space", "/p/shared/logs", "/p/shared"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}
