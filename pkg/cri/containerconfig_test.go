package cri

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The version-1 fixture's container config (v1fixture_test.go) is the rich
// one: every field the engine keeps, translated.
func TestContainerConfigTranslation(t *testing.T) {
	got, err := toContainerConfig(v1ContainerConfig())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(v1WantContainer(), got); diff != "" {
		t.Errorf("ctrconfig.Container (-want +got):\n%s", diff)
	}
}

// v1WantContainer is v1ContainerConfig as the engine keeps it.
func v1WantContainer() ctrconfig.Container {
	mapping := []ctrconfig.IDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	runAs, group := int64(1000), int64(3000)
	return ctrconfig.Container{
		Name: "app", Attempt: 2, Image: "docker.io/library/nginx:1.27", UserSpecifiedImage: "nginx:1.27",
		Command: []string{"/docker-entrypoint.sh"}, Args: []string{"nginx", "-g", "daemon off;"}, WorkingDir: "/srv/www",
		Env: []ctrconfig.EnvVar{{Key: "MODE", Value: "prod"}, {Key: "PATH", Value: "/opt/bin:/usr/bin:/bin"}, {Key: "EMPTY"}},
		Mounts: []ctrconfig.Mount{
			{ContainerPath: "/data", HostPath: "/var/lib/kubelet/pods/8a1b2c3d-uid/volumes/kubernetes.io~empty-dir/data",
				UIDMappings: mapping, GIDMappings: mapping, SELinuxRelabel: true},
			{ContainerPath: "/shared", HostPath: "/mnt/shared", Propagation: ctrconfig.PropagationBidirectional},
			{ContainerPath: "/host-logs", HostPath: "/var/log", Readonly: true, Propagation: ctrconfig.PropagationHostToContainer,
				Options: []string{"noexec", "nosuid"}},
			{ContainerPath: "/models", Readonly: true, Image: "registry.example/models:v3", ImageSubPath: "weights"},
			{ContainerPath: "/etc/config", HostPath: "/var/lib/kubelet/pods/8a1b2c3d-uid/volumes/kubernetes.io~configmap/cfg",
				Readonly: true, RecursiveReadOnly: true},
		},
		Devices:     []ctrconfig.Device{{ContainerPath: "/dev/fuse", HostPath: "/dev/fuse", Permissions: "rw"}},
		CDIDevices:  []string{"vendor.example/gpu=0"},
		Labels:      map[string]string{"io.kubernetes.container.name": "app", "tier": "front"},
		Annotations: map[string]string{"io.kubernetes.container.hash": "4f2a", "io.kubernetes.container.restartCount": "2"},
		LogPath:     "app/2.log", Stdin: true, StdinOnce: true, TTY: true, StopSignal: "SIGUSR1",
		Resources: &ctrconfig.Resources{
			CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 512, MemoryLimit: 256 << 20, OOMScoreAdj: 100,
			CpusetCPUs: "0-1", CpusetMems: "0", MemorySwapLimit: 256 << 20,
			HugepageLimits: []ctrconfig.HugepageLimit{{PageSize: "2MB", Limit: 0}, {PageSize: "1GB", Limit: 1 << 30}},
			Unified:        map[string]string{"memory.high": "200000000"},
		},
		Security: ctrconfig.Security{
			Capabilities: ctrconfig.Capabilities{Add: []string{"NET_ADMIN", "sys_time"}, Drop: []string{"MKNOD"}, AddAmbient: []string{"NET_BIND_SERVICE"}},
			Namespaces: ctrconfig.Namespaces{Network: ctrconfig.NamespacePod, PID: ctrconfig.NamespaceContainer, IPC: ctrconfig.NamespacePod,
				UserNS: &ctrconfig.UserNS{Mode: ctrconfig.NamespacePod, UIDs: mapping, GIDs: mapping}},
			SELinux:   &ctrconfig.SELinux{User: "system_u", Role: "system_r", Type: "container_t", Level: "s0:c1,c2"},
			RunAsUser: &runAs, RunAsGroup: &group, ReadonlyRootfs: true,
			SupplementalGroups: []int64{4000, 4001}, SupplementalGroupsPolicy: ctrconfig.GroupsMerge, NoNewPrivs: true,
			MaskedPaths: []string{"/proc/kcore", "/proc/keys"}, ReadonlyPaths: []string{"/proc/sys", "/proc/bus"},
			Seccomp:  &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileLocalhost, LocalhostRef: "/var/lib/kubelet/seccomp/audit.json"},
			AppArmor: &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileLocalhost, LocalhostRef: "k8s-web"},
		},
	}
}

// What ContainerStatus reports of a config is what kubelet sent.
func TestContainerConfigBackToCRI(t *testing.T) {
	c := v1ContainerConfig()
	got, err := toContainerConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range got.Mounts {
		if diff := cmp.Diff(c.Mounts[i], fromMount(m, ""), protocmp.Transform(),
			protocmp.IgnoreFields(&runtime.ImageSpec{}, "user_specified_image")); diff != "" {
			t.Errorf("mount %d (-sent +reported):\n%s", i, diff)
		}
	}
	for _, r := range []*runtime.LinuxContainerResources{nil, {}, c.Linux.Resources} {
		if diff := cmp.Diff(r, fromResources(toResources(r)), protocmp.Transform()); diff != "" {
			t.Errorf("resources (-sent +reported):\n%s", diff)
		}
	}
}

// Security profiles and their deprecated string forms, which the engine
// never sees.
func TestSecurityProfiles(t *testing.T) {
	local := &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileLocalhost, LocalhostRef: "p"}
	tests := []struct {
		name    string
		profile *runtime.SecurityProfile
		legacy  string
		want    *ctrconfig.SecurityProfile
		wantErr error
	}{
		{name: "none"},
		{name: "runtime default", profile: &runtime.SecurityProfile{}, want: &ctrconfig.SecurityProfile{}},
		{name: "localhost", profile: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "p"}, want: local},
		{name: "localhost without ref (the spec builder refuses it)", profile: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost},
			want: &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileLocalhost}},
		{name: "the profile beats the string", profile: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Unconfined}, legacy: "localhost/p",
			want: &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileUnconfined}},
		{name: "legacy runtime/default", legacy: "runtime/default", want: &ctrconfig.SecurityProfile{}},
		{name: "legacy docker/default", legacy: "docker/default", want: &ctrconfig.SecurityProfile{}},
		{name: "legacy unconfined", legacy: "unconfined", want: &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileUnconfined}},
		{name: "legacy localhost", legacy: "localhost/p", want: local},
		{name: "legacy localhost without ref", legacy: "localhost/", wantErr: errdefs.ErrInvalidArgument},
		{name: "legacy garbage", legacy: "what", wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, sc := range []*runtime.LinuxContainerSecurityContext{
				{Seccomp: tt.profile, SeccompProfilePath: tt.legacy},
				{Apparmor: tt.profile, ApparmorProfile: tt.legacy},
			} {
				got, err := toContainerConfig(&runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{SecurityContext: sc}})
				if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				p := got.Security.Seccomp
				if sc.Apparmor != nil || sc.ApparmorProfile != "" { //nolint:staticcheck // the deprecated field
					p = got.Security.AppArmor
				}
				if diff := cmp.Diff(tt.want, p); diff != "" {
					t.Errorf("profile (-want +got):\n%s", diff)
				}
			}
		})
	}
}
