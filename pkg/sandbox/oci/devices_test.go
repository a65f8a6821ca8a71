package oci

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

type fakeDevices map[string]Device

func (f fakeDevices) DeviceInfo(p string) (Device, error) {
	d, ok := f[p]
	if !ok {
		return Device{}, fmt.Errorf("stat %s: %w", p, fs.ErrNotExist)
	}
	return d, nil
}

func testDevices() fakeDevices {
	return fakeDevices{
		"/dev/fuse":  {Type: "c", Major: 10, Minor: 229, Mode: 0o666},
		"/dev/sda":   {Type: "b", Major: 8, Minor: 0, Mode: 0o660, GID: 6},
		"/dev/null":  {Type: "c", Major: 1, Minor: 3, Mode: 0o666},
		"/etc/hosts": {Type: "-"},
	}
}

func i64p(v int64) *int64 { return &v }

func dev(p, typ string, major, minor int64, mode fs.FileMode, gid uint32) specs.LinuxDevice {
	uid := uint32(0)
	return specs.LinuxDevice{Path: p, Type: typ, Major: major, Minor: minor, FileMode: &mode, UID: &uid, GID: &gid}
}

func TestDevices(t *testing.T) {
	deny := specs.LinuxDeviceCgroup{Allow: false, Access: "rwm"}
	tests := []struct {
		name        string
		devices     []ctrconfig.Device
		privileged  bool
		hostDevices []string
		noLookup    bool
		wantDevs    []specs.LinuxDevice
		wantRules   []specs.LinuxDeviceCgroup
		wantErr     error
	}{
		{name: "none", wantRules: []specs.LinuxDeviceCgroup{deny}},
		{
			name:     "fuse and disk",
			devices:  []ctrconfig.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse", Permissions: "rw"}, {HostPath: "/dev/sda", ContainerPath: "/dev/xvda"}},
			wantDevs: []specs.LinuxDevice{dev("/dev/fuse", "c", 10, 229, 0o666, 0), dev("/dev/xvda", "b", 8, 0, 0o660, 6)},
			wantRules: []specs.LinuxDeviceCgroup{deny,
				{Allow: true, Type: "c", Major: i64p(10), Minor: i64p(229), Access: "rw"},
				{Allow: true, Type: "b", Major: i64p(8), Minor: i64p(0), Access: "rwm"}},
		},
		{
			name:        "privileged gets host devices, CRI device replaces one",
			privileged:  true,
			hostDevices: []string{"/dev/null", "/dev/fuse"},
			devices:     []ctrconfig.Device{{HostPath: "/dev/sda", ContainerPath: "/dev/fuse"}},
			wantDevs:    []specs.LinuxDevice{dev("/dev/null", "c", 1, 3, 0o666, 0), dev("/dev/fuse", "b", 8, 0, 0o660, 6)},
			wantRules:   []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}},
		},
		{name: "bad permissions", devices: []ctrconfig.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse", Permissions: "rwx"}}, wantErr: errdefs.ErrInvalidArgument},
		{name: "repeated permission", devices: []ctrconfig.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse", Permissions: "rr"}}, wantErr: errdefs.ErrInvalidArgument},
		{name: "relative path", devices: []ctrconfig.Device{{HostPath: "/dev/fuse", ContainerPath: "fuse"}}, wantErr: errdefs.ErrInvalidArgument},
		{name: "not a device", devices: []ctrconfig.Device{{HostPath: "/etc/hosts", ContainerPath: "/dev/x"}}, wantErr: errdefs.ErrInvalidArgument},
		{name: "missing", devices: []ctrconfig.Device{{HostPath: "/dev/nope", ContainerPath: "/dev/x"}}, wantErr: errdefs.ErrInvalidArgument},
		{name: "no lookup", noLookup: true, devices: []ctrconfig.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse"}}, wantErr: errdefs.ErrFailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput()
			in.Config.Devices = tt.devices
			in.Config.Security.Privileged = tt.privileged
			in.Pod.Privileged = tt.privileged
			b := &builder{in: in, spec: baseSpec(in), opts: options{devices: testDevices(), hostDevices: tt.hostDevices}}
			if tt.noLookup {
				b.opts.devices = nil
			}
			err := b.devices(context.Background())
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.wantDevs, b.spec.Linux.Devices); diff != "" {
				t.Errorf("devices (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantRules, b.spec.Linux.Resources.Devices); diff != "" {
				t.Errorf("cgroup rules (-want +got):\n%s", diff)
			}
		})
	}
}
