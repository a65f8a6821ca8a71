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

func TestNamespaces(t *testing.T) {
	pod := PodNamespaces{Network: "/run/netns/p", IPC: "/proc/9/ns/ipc", UTS: "/proc/9/ns/uts", PID: "/proc/9/ns/pid", User: "/proc/9/ns/user", TargetPID: "/proc/12/ns/pid"}
	mnt := specs.LinuxNamespace{Type: specs.MountNamespace}
	net := specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: pod.Network}
	uts := specs.LinuxNamespace{Type: specs.UTSNamespace, Path: pod.UTS}
	ipc := specs.LinuxNamespace{Type: specs.IPCNamespace, Path: pod.IPC}
	ownPID := specs.LinuxNamespace{Type: specs.PIDNamespace}
	cgroup := specs.LinuxNamespace{Type: specs.CgroupNamespace}
	mapping := []ctrconfig.IDMapping{{HostID: 65536, ContainerID: 0, Size: 65536}}
	userns := &ctrconfig.UserNS{Mode: ctrconfig.NamespacePod, UIDs: mapping, GIDs: mapping}
	tests := []struct {
		name         string
		opts         ctrconfig.Namespaces
		podOpts      *ctrconfig.Namespaces // the pod's; nil: the same as opts, as kubelet sends
		pod          PodNamespaces
		host         Host
		want         []specs.LinuxNamespace
		wantHostname string
		wantUIDs     []specs.LinuxIDMapping
		wantErr      error
	}{
		{name: "pod defaults, own PID", opts: ctrconfig.Namespaces{PID: ctrconfig.NamespaceContainer}, pod: pod, want: []specs.LinuxNamespace{mnt, net, uts, ipc, ownPID}},
		{name: "shared PID, cgroup v2", opts: ctrconfig.Namespaces{}, pod: pod, host: Host{CgroupV2: true},
			want: []specs.LinuxNamespace{mnt, net, uts, ipc, {Type: specs.PIDNamespace, Path: pod.PID}, cgroup}},
		{name: "host network, IPC and PID", opts: ctrconfig.Namespaces{Network: ctrconfig.NamespaceNode, IPC: ctrconfig.NamespaceNode, PID: ctrconfig.NamespaceNode}, pod: pod, want: []specs.LinuxNamespace{mnt}},
		{name: "host-network pod, container without modes", opts: ctrconfig.Namespaces{},
			podOpts: &ctrconfig.Namespaces{Network: ctrconfig.NamespaceNode, PID: ctrconfig.NamespaceContainer}, pod: PodNamespaces{IPC: pod.IPC},
			want: []specs.LinuxNamespace{mnt, ipc, {Type: specs.PIDNamespace, Path: ""}}},
		{name: "host-PID pod keeps its containers there", opts: ctrconfig.Namespaces{PID: ctrconfig.NamespacePod},
			podOpts: &ctrconfig.Namespaces{PID: ctrconfig.NamespaceNode}, pod: pod, want: []specs.LinuxNamespace{mnt, net, uts, ipc}},
		{name: "target PID", opts: ctrconfig.Namespaces{PID: ctrconfig.NamespaceTarget}, pod: pod, want: []specs.LinuxNamespace{mnt, net, uts, ipc, {Type: specs.PIDNamespace, Path: pod.TargetPID}}},
		{name: "target PID without path", opts: ctrconfig.Namespaces{PID: ctrconfig.NamespaceTarget}, wantErr: errdefs.ErrInvalidArgument},
		{name: "own UTS gets the hostname", opts: ctrconfig.Namespaces{PID: ctrconfig.NamespaceContainer}, pod: PodNamespaces{},
			want:         []specs.LinuxNamespace{mnt, {Type: specs.NetworkNamespace}, {Type: specs.UTSNamespace}, {Type: specs.IPCNamespace}, ownPID},
			wantHostname: "web-0"},
		{name: "the pod's user namespace: its path, no mappings", opts: ctrconfig.Namespaces{PID: ctrconfig.NamespaceContainer, UserNS: userns}, pod: pod, host: Host{UserNamespaces: true},
			want: []specs.LinuxNamespace{mnt, net, uts, ipc, ownPID, {Type: specs.UserNamespace, Path: pod.User}}},
		{name: "user namespace unsupported", opts: ctrconfig.Namespaces{UserNS: userns}, pod: pod, wantErr: errdefs.ErrInvalidArgument},
		{name: "user namespace without mappings", opts: ctrconfig.Namespaces{UserNS: &ctrconfig.UserNS{Mode: ctrconfig.NamespacePod}}, host: Host{UserNamespaces: true}, wantErr: errdefs.ErrInvalidArgument},
		{name: "user namespace per container", opts: ctrconfig.Namespaces{UserNS: &ctrconfig.UserNS{Mode: ctrconfig.NamespaceContainer}}, host: Host{UserNamespaces: true}, wantErr: errdefs.ErrInvalidArgument},
		{name: "user namespace without a path: mappings, container without options", opts: ctrconfig.Namespaces{PID: ctrconfig.NamespaceContainer},
			podOpts: &ctrconfig.Namespaces{UserNS: userns}, pod: PodNamespaces{Network: pod.Network, IPC: pod.IPC, UTS: pod.UTS}, host: Host{UserNamespaces: true},
			want:     []specs.LinuxNamespace{mnt, net, uts, ipc, ownPID, {Type: specs.UserNamespace}},
			wantUIDs: []specs.LinuxIDMapping{{HostID: 65536, ContainerID: 0, Size: 65536}}},
		{name: "container user namespace in a host-users pod", opts: ctrconfig.Namespaces{UserNS: userns},
			podOpts: &ctrconfig.Namespaces{}, pod: pod, host: Host{UserNamespaces: true}, wantErr: errdefs.ErrInvalidArgument},
		{name: "host user namespace", opts: ctrconfig.Namespaces{PID: ctrconfig.NamespaceContainer, UserNS: &ctrconfig.UserNS{Mode: ctrconfig.NamespaceNode}}, pod: pod, want: []specs.LinuxNamespace{mnt, net, uts, ipc, ownPID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput()
			in.Config.Security.Namespaces = tt.opts
			podOpts := tt.opts
			if tt.podOpts != nil {
				podOpts = *tt.podOpts
			}
			setPodNamespaces(&in.Pod, podOpts)
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

// setPodNamespaces gives pod the namespace options as the CRI edge
// translates a pod's: its modes, and the mappings of a user namespace of
// its own.
func setPodNamespaces(pod *ctrconfig.Pod, ns ctrconfig.Namespaces) {
	pod.Network, pod.PID, pod.IPC, pod.UserNS = ns.Network, ns.PID, ns.IPC, nil
	if u := ns.UserNS; u != nil && u.Mode == ctrconfig.NamespacePod {
		pod.UserNS = &ctrconfig.IDMappings{UIDs: u.UIDs, GIDs: u.GIDs}
	}
}
