package cri

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/google/go-cmp/cmp"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestToUserNS covers what critest's user-namespace specs and kubelet send.
func TestToUserNS(t *testing.T) {
	one := func(c, h, l uint32) []*runtime.IDMapping {
		return []*runtime.IDMapping{{ContainerId: c, HostId: h, Length: l}}
	}
	pod := func(u, g []*runtime.IDMapping) *runtime.UserNamespace {
		return &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: u, Gids: g}
	}
	tests := []struct {
		name    string
		ns      *runtime.NamespaceOption
		want    *ctrconfig.IDMappings
		wantErr error
	}{
		{name: "no options", ns: nil},
		{name: "no user namespace options", ns: &runtime.NamespaceOption{}},
		{name: "NODE: the host's users", ns: &runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}}},
		{name: "POD as kubelet sends it", ns: &runtime.NamespaceOption{UsernsOptions: pod(one(0, 196608, 65536), one(0, 196608, 65536))},
			want: &ctrconfig.IDMappings{UIDs: []ctrconfig.IDMapping{{HostID: 196608, Size: 65536}}, GIDs: []ctrconfig.IDMapping{{HostID: 196608, Size: 65536}}}},
		{name: "gids differ from uids", ns: &runtime.NamespaceOption{UsernsOptions: pod(one(0, 1000, 100000), one(0, 2000, 100000))},
			want: &ctrconfig.IDMappings{UIDs: []ctrconfig.IDMapping{{HostID: 1000, Size: 100000}}, GIDs: []ctrconfig.IDMapping{{HostID: 2000, Size: 100000}}}},
		{name: "CONTAINER", ns: &runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_CONTAINER}}, wantErr: errdefs.ErrInvalidArgument},
		{name: "TARGET", ns: &runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_TARGET}}, wantErr: errdefs.ErrInvalidArgument},
		{name: "more than one mapping", ns: &runtime.NamespaceOption{UsernsOptions: pod(
			[]*runtime.IDMapping{{HostId: 1000, Length: 100000}, {HostId: 2000, Length: 100000}}, one(0, 1000, 100000))}, wantErr: errdefs.ErrInvalidArgument},
		{name: "no gid mapping", ns: &runtime.NamespaceOption{UsernsOptions: pod(one(0, 1000, 100000), nil)}, wantErr: errdefs.ErrInvalidArgument},
		{name: "container root unmapped", ns: &runtime.NamespaceOption{UsernsOptions: pod(one(1, 1000, 100000), one(1, 1000, 100000))}, wantErr: errdefs.ErrInvalidArgument},
		{name: "empty mapping", ns: &runtime.NamespaceOption{UsernsOptions: pod(one(0, 1000, 0), one(0, 1000, 0))}, wantErr: errdefs.ErrInvalidArgument},
		{name: "host root mapped", ns: &runtime.NamespaceOption{UsernsOptions: pod(one(0, 0, 65536), one(0, 0, 65536))}, wantErr: errdefs.ErrInvalidArgument},
		{name: "overflow", ns: &runtime.NamespaceOption{UsernsOptions: pod(one(0, 1<<32-10, 65536), one(0, 1000, 65536))}, wantErr: errdefs.ErrInvalidArgument},
		{name: "with host network", ns: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE, UsernsOptions: pod(one(0, 1000, 65536), one(0, 1000, 65536))}, wantErr: errdefs.ErrInvalidArgument},
		{name: "with host PID", ns: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_NODE, UsernsOptions: pod(one(0, 1000, 65536), one(0, 1000, 65536))}, wantErr: errdefs.ErrInvalidArgument},
		{name: "with host IPC", ns: &runtime.NamespaceOption{Ipc: runtime.NamespaceMode_NODE, UsernsOptions: pod(one(0, 1000, 65536), one(0, 1000, 65536))}, wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := toUserNS(tt.ns)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("mappings (-want +got):\n%s", diff)
			}
		})
	}
}
