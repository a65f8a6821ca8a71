package oci

import (
	"context"
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCRIMount(t *testing.T) {
	rro := Host{RecursiveReadOnly: true}
	tests := []struct {
		name    string
		m       ctrconfig.Mount
		host    Host
		want    specs.Mount
		wantErr error
	}{
		{
			name: "private rw",
			m:    ctrconfig.Mount{HostPath: "/var/lib/kubelet/pods/x/volumes/v/", ContainerPath: "/data"},
			want: specs.Mount{Destination: "/data", Type: "bind", Source: "/var/lib/kubelet/pods/x/volumes/v", Options: []string{"rbind", "rprivate", "rw"}},
		},
		{
			name: "host to container ro",
			m:    ctrconfig.Mount{HostPath: "/h", ContainerPath: "/c", Readonly: true, Propagation: ctrconfig.PropagationHostToContainer},
			want: specs.Mount{Destination: "/c", Type: "bind", Source: "/h", Options: []string{"rbind", "rslave", "ro"}},
		},
		{
			name: "bidirectional",
			m:    ctrconfig.Mount{HostPath: "/h", ContainerPath: "/c", Propagation: ctrconfig.PropagationBidirectional},
			want: specs.Mount{Destination: "/c", Type: "bind", Source: "/h", Options: []string{"rbind", "rshared", "rw"}},
		},
		{
			name: "recursive read-only",
			m:    ctrconfig.Mount{HostPath: "/h", ContainerPath: "/c", Readonly: true, RecursiveReadOnly: true},
			host: rro,
			want: specs.Mount{Destination: "/c", Type: "bind", Source: "/h", Options: []string{"rbind", "rprivate", "rro"}},
		},
		{
			name: "idmapped with options",
			m: ctrconfig.Mount{HostPath: "/h", ContainerPath: "/c", Options: []string{"noexec", "nosuid"},
				UIDMappings: []ctrconfig.IDMapping{{HostID: 100000, ContainerID: 0, Size: 65536}},
				GIDMappings: []ctrconfig.IDMapping{{HostID: 200000, ContainerID: 0, Size: 65536}}},
			want: specs.Mount{Destination: "/c", Type: "bind", Source: "/h", Options: []string{"rbind", "rprivate", "rw", "noexec", "nosuid"},
				UIDMappings: []specs.LinuxIDMapping{{HostID: 100000, Size: 65536}},
				GIDMappings: []specs.LinuxIDMapping{{HostID: 200000, Size: 65536}}},
		},
		{name: "rro unsupported", m: ctrconfig.Mount{HostPath: "/h", ContainerPath: "/c", Readonly: true, RecursiveReadOnly: true}, wantErr: errdefs.ErrFailedPrecondition},
		{name: "rro but rw", m: ctrconfig.Mount{HostPath: "/h", ContainerPath: "/c", RecursiveReadOnly: true}, host: rro, wantErr: errdefs.ErrInvalidArgument},
		{name: "rro not private", m: ctrconfig.Mount{HostPath: "/h", ContainerPath: "/c", Readonly: true, RecursiveReadOnly: true, Propagation: ctrconfig.PropagationHostToContainer}, host: rro, wantErr: errdefs.ErrInvalidArgument},
		{name: "relative host path", m: ctrconfig.Mount{HostPath: "h", ContainerPath: "/c"}, wantErr: errdefs.ErrInvalidArgument},
		{name: "relative container path", m: ctrconfig.Mount{HostPath: "/h", ContainerPath: "c"}, wantErr: errdefs.ErrInvalidArgument},
		{name: "bad propagation", m: ctrconfig.Mount{HostPath: "/h", ContainerPath: "/c", Propagation: 9}, wantErr: errdefs.ErrInvalidArgument},
		{name: "bad option", m: ctrconfig.Mount{HostPath: "/h", ContainerPath: "/c", Options: []string{"suid"}}, wantErr: errdefs.ErrInvalidArgument},
		// The engine mounts image volumes itself (imagevolumes.go); one reaching
		// criMount unresolved is a bug, not a request to refuse.
		{name: "image volume", m: ctrconfig.Mount{ContainerPath: "/c", Image: "sha256:abc"}, wantErr: errdefs.ErrInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := criMount(tt.m, tt.host)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("mount (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCRIMountsPropagation(t *testing.T) {
	m := func(dst string, p ctrconfig.Propagation) ctrconfig.Mount {
		return ctrconfig.Mount{HostPath: "/h" + dst, ContainerPath: dst, Propagation: p}
	}
	tests := []struct {
		name    string
		in      []ctrconfig.Mount
		want    string
		wantErr error
	}{
		{name: "none"},
		{name: "private", in: []ctrconfig.Mount{m("/a", ctrconfig.PropagationPrivate)}},
		{name: "slave", in: []ctrconfig.Mount{m("/a", ctrconfig.PropagationHostToContainer)}, want: "rslave"},
		{name: "shared wins", in: []ctrconfig.Mount{m("/a", ctrconfig.PropagationBidirectional), m("/b", ctrconfig.PropagationHostToContainer)}, want: "rshared"},
		{name: "duplicate", in: []ctrconfig.Mount{m("/a", 0), m("/a/", 0)}, wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got, err := criMounts(tt.in, Host{})
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("rootfs propagation = %q, want %q", got, tt.want)
			}
		})
	}
}

func destinations(ms []specs.Mount) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Destination+":"+m.Type)
	}
	return out
}

func TestMergeMounts(t *testing.T) {
	bind := func(dst string) specs.Mount { return bindMount("/h"+dst, dst, "rprivate", "rw") }
	defaults := append(defaultMounts(false), podFileMounts(PodFiles{Hosts: "/p/hosts", ResolvConf: "/p/resolv", Shm: "/p/shm"}, false, false)...)
	tests := []struct {
		name string
		cri  []specs.Mount
		want []string
	}{
		{
			name: "defaults only",
			want: []string{"/proc:proc", "/dev:tmpfs", "/sys:sysfs", "/dev/pts:devpts", "/dev/mqueue:mqueue",
				"/etc/hosts:bind", "/etc/resolv.conf:bind", "/dev/shm:bind", "/sys/fs/cgroup:cgroup"},
		},
		{
			name: "CRI replaces a default and nests",
			cri:  []specs.Mount{bind("/data/sub"), bind("/etc/hosts"), bind("/data")},
			want: []string{"/proc:proc", "/dev:tmpfs", "/sys:sysfs", "/data:bind", "/dev/pts:devpts", "/dev/mqueue:mqueue",
				"/etc/resolv.conf:bind", "/dev/shm:bind", "/data/sub:bind", "/etc/hosts:bind", "/sys/fs/cgroup:cgroup"},
		},
		{
			name: "CRI /dev drops everything under /dev",
			cri:  []specs.Mount{bind("/dev")},
			want: []string{"/proc:proc", "/sys:sysfs", "/dev:bind", "/etc/hosts:bind", "/etc/resolv.conf:bind", "/sys/fs/cgroup:cgroup"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, destinations(mergeMounts(defaults, tt.cri))); diff != "" {
				t.Errorf("mounts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPodFileMounts(t *testing.T) {
	tests := []struct {
		name     string
		files    PodFiles
		ipcHost  bool
		readonly bool
		want     []specs.Mount
	}{
		{
			name:  "private shm tmpfs",
			files: PodFiles{Hostname: "/p/hostname"},
			want: []specs.Mount{
				bindMount("/p/hostname", etcHostname, "rprivate", "rw"),
				{Destination: devShm, Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			},
		},
		{
			name:     "host ipc, read-only rootfs",
			files:    PodFiles{Hosts: "/p/hosts", Shm: "/p/shm"},
			ipcHost:  true,
			readonly: true,
			want:     []specs.Mount{bindMount("/p/hosts", etcHosts, "rprivate", "ro"), bindMount(devShm, devShm, "rprivate", "rw")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, podFileMounts(tt.files, tt.ipcHost, tt.readonly)); diff != "" {
				t.Errorf("mounts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildUserNamespaceMounts(t *testing.T) {
	in := testInput()
	mapping := []ctrconfig.IDMapping{{HostID: 65536, ContainerID: 0, Size: 65536}}
	in.Config.Security.Namespaces.UserNS = &ctrconfig.UserNS{Mode: ctrconfig.NamespacePod, UIDs: mapping, GIDs: mapping}
	setPodNamespaces(&in.Pod, ctrconfig.Namespaces{UserNS: in.Config.Security.Namespaces.UserNS})
	in.Host.UserNamespaces = true
	res, err := Build(context.Background(), in, WithImageFS(testImageFS()))
	if err != nil {
		t.Fatal(err)
	}
	want := []specs.LinuxIDMapping{{HostID: 65536, ContainerID: 0, Size: 65536}}
	got := map[string][]specs.LinuxIDMapping{}
	for _, m := range res.Spec.Mounts {
		if m.Type == "bind" {
			got[m.Destination] = m.UIDMappings
		}
	}
	wantMounts := map[string][]specs.LinuxIDMapping{etcHosts: want, etcResolvConf: want, etcHostname: want, devShm: nil}
	if diff := cmp.Diff(wantMounts, got); diff != "" {
		t.Errorf("uid mappings by mount (-want +got):\n%s", diff)
	}
	if res.Spec.Linux.MaskedPaths != nil {
		t.Errorf("masked paths = %q, want none (procMount Unmasked)", res.Spec.Linux.MaskedPaths)
	}
}
