package oci

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/google/go-cmp/cmp"
)

func TestCheckSysctls(t *testing.T) {
	hostNet := ctrconfig.Namespaces{Network: ctrconfig.NamespaceNode}
	hostIPC := ctrconfig.Namespaces{IPC: ctrconfig.NamespaceNode}
	tests := []struct {
		name    string
		in      map[string]string
		ns      ctrconfig.Namespaces
		want    map[string]string
		wantErr error
	}{
		{name: "none"},
		{
			name: "namespaced",
			in:   map[string]string{"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "20", "net/ipv4/ping_group_range": "0 1"},
			want: map[string]string{"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "20", "net.ipv4.ping_group_range": "0 1"},
		},
		{name: "node-wide", in: map[string]string{"vm.overcommit_memory": "1"}, wantErr: errdefs.ErrInvalidArgument},
		{name: "kernel node-wide", in: map[string]string{"kernel.pid_max": "1"}, wantErr: errdefs.ErrInvalidArgument},
		{name: "net with host network", in: map[string]string{"net.core.somaxconn": "1"}, ns: hostNet, wantErr: errdefs.ErrInvalidArgument},
		{name: "uts with host network", in: map[string]string{"kernel.domainname": "x"}, ns: hostNet, wantErr: errdefs.ErrInvalidArgument},
		{name: "ipc with host ipc", in: map[string]string{"kernel.msgmax": "1"}, ns: hostIPC, wantErr: errdefs.ErrInvalidArgument},
		{name: "ipc with host network", in: map[string]string{"kernel.msgmax": "1"}, ns: hostNet, want: map[string]string{"kernel.msgmax": "1"}},
		{name: "net with host ipc", in: map[string]string{"net.core.somaxconn": "1"}, ns: hostIPC, want: map[string]string{"net.core.somaxconn": "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := checkSysctls(tt.in, tt.ns)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmpEmptyMaps()); diff != "" {
				t.Errorf("sysctls (-want +got):\n%s", diff)
			}
		})
	}
}

func cmpEmptyMaps() cmp.Option {
	return cmp.FilterValues(func(a, b map[string]string) bool { return len(a) == 0 && len(b) == 0 }, cmp.Ignore())
}
