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

func TestParseMountsUnder(t *testing.T) {
	mi := `22 1 0:21 / / rw - ext4 /dev/sda rw
30 22 0:40 / /p/shared rw shared:5 - none none rw
31 30 0:41 / /p/shared/c/x/rootfs rw - overlay overlay rw
32 30 0:42 / /p/shared/logs rw - ext4 /dev/sda rw
33 31 0:43 / /p/shared/c/x/rootfs/proc rw - proc proc rw
34 22 0:44 / /p/shared2 rw - tmpfs t rw
35 30 0:45 / /p/shared/with\040space rw - tmpfs t rw
`
	got := parseMountsUnder(mi, "/p/shared")
	want := []string{"/p/shared/c/x/rootfs/proc", "/p/shared/c/x/rootfs", "/p/shared/with space", "/p/shared/logs", "/p/shared"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}
