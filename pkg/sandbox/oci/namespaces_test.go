package oci

import (
	"context"
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestNamespaces(t *testing.T) {
	pod := PodNamespaces{Network: "/run/netns/p", IPC: "/proc/9/ns/ipc", UTS: "/proc/9/ns/uts", PID: "/proc/9/ns/pid", User: "/proc/9/ns/user", TargetPID: "/proc/12/ns/pid"}
	mnt := specs.LinuxNamespace{Type: specs.MountNamespace}
	net := specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: pod.Network}
	uts := specs.LinuxNamespace{Type: specs.UTSNamespace, Path: pod.UTS}
	ipc := specs.LinuxNamespace{Type: specs.IPCNamespace, Path: pod.IPC}
	ownPID := specs.LinuxNamespace{Type: specs.PIDNamespace}
	cgroup := specs.LinuxNamespace{Type: specs.CgroupNamespace}
	mapping := []*runtime.IDMapping{{HostId: 65536, ContainerId: 0, Length: 65536}}
	userns := &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: mapping, Gids: mapping}
	tests := []struct {
		name         string
		opts         *runtime.NamespaceOption
		podOpts      *runtime.NamespaceOption // the pod's; nil: the same as opts, as kubelet sends
		pod          PodNamespaces
		host         Host
		want         []specs.LinuxNamespace
		wantHostname string
		wantUIDs     []specs.LinuxIDMapping
		wantErr      error
	}{
		{name: "pod defaults, own PID", opts: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}, pod: pod, want: []specs.LinuxNamespace{mnt, net, uts, ipc, ownPID}},
		{name: "shared PID, cgroup v2", opts: &runtime.NamespaceOption{}, pod: pod, host: Host{CgroupV2: true},
			want: []specs.LinuxNamespace{mnt, net, uts, ipc, {Type: specs.PIDNamespace, Path: pod.PID}, cgroup}},
		{name: "host network, IPC and PID", opts: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE, Ipc: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_NODE}, pod: pod, want: []specs.LinuxNamespace{mnt}},
		{name: "host-network pod, container without modes", opts: nil,
			podOpts: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_CONTAINER}, pod: PodNamespaces{IPC: pod.IPC},
			want: []specs.LinuxNamespace{mnt, ipc, {Type: specs.PIDNamespace, Path: ""}}},
		{name: "host-PID pod keeps its containers there", opts: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD},
			podOpts: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_NODE}, pod: pod, want: []specs.LinuxNamespace{mnt, net, uts, ipc}},
		{name: "target PID", opts: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET}, pod: pod, want: []specs.LinuxNamespace{mnt, net, uts, ipc, {Type: specs.PIDNamespace, Path: pod.TargetPID}}},
		{name: "target PID without path", opts: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET}, wantErr: errdefs.ErrInvalidArgument},
		{name: "own UTS gets the hostname", opts: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}, pod: PodNamespaces{},
			want:         []specs.LinuxNamespace{mnt, {Type: specs.NetworkNamespace}, {Type: specs.UTSNamespace}, {Type: specs.IPCNamespace}, ownPID},
			wantHostname: "web-0"},
		{name: "the pod's user namespace: its path, no mappings", opts: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER, UsernsOptions: userns}, pod: pod, host: Host{UserNamespaces: true},
			want: []specs.LinuxNamespace{mnt, net, uts, ipc, ownPID, {Type: specs.UserNamespace, Path: pod.User}}},
		{name: "user namespace unsupported", opts: &runtime.NamespaceOption{UsernsOptions: userns}, pod: pod, wantErr: errdefs.ErrInvalidArgument},
		{name: "user namespace without mappings", opts: &runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD}}, host: Host{UserNamespaces: true}, wantErr: errdefs.ErrInvalidArgument},
		{name: "user namespace per container", opts: &runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_CONTAINER}}, host: Host{UserNamespaces: true}, wantErr: errdefs.ErrInvalidArgument},
		{name: "user namespace without a path: mappings, container without options", opts: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER},
			podOpts: &runtime.NamespaceOption{UsernsOptions: userns}, pod: PodNamespaces{Network: pod.Network, IPC: pod.IPC, UTS: pod.UTS}, host: Host{UserNamespaces: true},
			want:     []specs.LinuxNamespace{mnt, net, uts, ipc, ownPID, {Type: specs.UserNamespace}},
			wantUIDs: []specs.LinuxIDMapping{{HostID: 65536, ContainerID: 0, Size: 65536}}},
		{name: "container user namespace in a host-users pod", opts: &runtime.NamespaceOption{UsernsOptions: userns},
			podOpts: &runtime.NamespaceOption{}, pod: pod, host: Host{UserNamespaces: true}, wantErr: errdefs.ErrInvalidArgument},
		{name: "host user namespace", opts: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER, UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}}, pod: pod, want: []specs.LinuxNamespace{mnt, net, uts, ipc, ownPID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput()
			in.Config.Linux.SecurityContext.NamespaceOptions = tt.opts
			podOpts := tt.podOpts
			if podOpts == nil {
				podOpts = tt.opts
			}
			in.Sandbox.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{NamespaceOptions: podOpts}
			in.Namespaces, in.Host = tt.pod, tt.host
			b := &builder{in: in, spec: baseSpec(in)}
			err := b.namespaces(context.Background())
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, b.spec.Linux.Namespaces); diff != "" {
				t.Errorf("namespaces (-want +got):\n%s", diff)
			}
			if b.spec.Hostname != tt.wantHostname {
				t.Errorf("hostname = %q, want %q", b.spec.Hostname, tt.wantHostname)
			}
			if diff := cmp.Diff(tt.wantUIDs, b.spec.Linux.UIDMappings); diff != "" {
				t.Errorf("uid mappings (-want +got):\n%s", diff)
			}
		})
	}
}
