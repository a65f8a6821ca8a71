package cri

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/oci"
	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The version-1 fixtures in testdata/v1 are a pod and a container
// checkpoint as the engine wrote them while it kept the CRI's own
// messages (PodConfig.Raw, Container.Config), and the OCI spec the spec
// builder of that time made for the container (written by
// TestV1Fixtures, in the commit that added them): the reference later
// versions migrate from and must build the same spec from. The configs
// below are the ones they hold.

const (
	v1PodID       = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
	v1ContainerID = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"
)

func v1PodSandboxConfig() *runtime.PodSandboxConfig {
	userns := &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD,
		Uids: []*runtime.IDMapping{{ContainerId: 0, HostId: 100000, Length: 65536}},
		Gids: []*runtime.IDMapping{{ContainerId: 0, HostId: 100000, Length: 65536}}}
	return &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: "web-0", Uid: "8a1b2c3d-uid", Namespace: "shop", Attempt: 1},
		LogDirectory: "/var/log/pods/shop_web-0_8a1b2c3d-uid",
		DnsConfig:    &runtime.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"shop.svc.cluster.local"}, Options: []string{"ndots:5"}},
		PortMappings: []*runtime.PortMapping{{Protocol: runtime.Protocol_TCP, ContainerPort: 8080, HostPort: 18080, HostIp: "127.0.0.1"}},
		Labels:       map[string]string{"app": "web", "io.kubernetes.pod.name": "web-0"},
		Annotations:  map[string]string{"kubernetes.io/config.source": "api"},
		Linux: &runtime.LinuxPodSandboxConfig{
			CgroupParent: "/kubepods/burstable/pod8a1b2c3d-uid",
			Sysctls:      map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "kernel/shm_rmid_forced": "1"},
			SecurityContext: &runtime.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_POD, Pid: runtime.NamespaceMode_CONTAINER,
					Ipc: runtime.NamespaceMode_POD, UsernsOptions: userns},
				RunAsUser:          &runtime.Int64Value{Value: 1000},
				SupplementalGroups: []int64{2000},
				Seccomp:            &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault},
			},
			Resources: &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 150000, CpuShares: 1536, MemoryLimitInBytes: 512 << 20,
				HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 0}}},
			Overhead: &runtime.LinuxContainerResources{CpuShares: 10, MemoryLimitInBytes: 64 << 20},
		},
	}
}

func v1ContainerConfig() *runtime.ContainerConfig {
	mapping := []*runtime.IDMapping{{ContainerId: 0, HostId: 100000, Length: 65536}}
	return &runtime.ContainerConfig{
		Metadata:   &runtime.ContainerMetadata{Name: "app", Attempt: 2},
		Image:      &runtime.ImageSpec{Image: "docker.io/library/nginx:1.27", UserSpecifiedImage: "nginx:1.27"},
		Command:    []string{"/docker-entrypoint.sh"},
		Args:       []string{"nginx", "-g", "daemon off;"},
		WorkingDir: "/srv/www",
		Envs:       []*runtime.KeyValue{{Key: "MODE", Value: []byte("prod")}, {Key: "PATH", Value: []byte("/opt/bin:/usr/bin:/bin")}, {Key: "EMPTY"}},
		Mounts: []*runtime.Mount{
			{ContainerPath: "/data", HostPath: "/var/lib/kubelet/pods/8a1b2c3d-uid/volumes/kubernetes.io~empty-dir/data",
				UidMappings: mapping, GidMappings: mapping, SelinuxRelabel: true},
			{ContainerPath: "/shared", HostPath: "/mnt/shared", Propagation: runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL},
			{ContainerPath: "/host-logs", HostPath: "/var/log", Readonly: true, Propagation: runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER,
				MountOptions: []string{"noexec", "nosuid"}},
			{ContainerPath: "/models", Readonly: true, Image: &runtime.ImageSpec{Image: "registry.example/models:v3", UserSpecifiedImage: "models:v3"},
				ImageSubPath: "weights"},
			{ContainerPath: "/etc/config", HostPath: "/var/lib/kubelet/pods/8a1b2c3d-uid/volumes/kubernetes.io~configmap/cfg",
				Readonly: true, RecursiveReadOnly: true},
		},
		Devices:     []*runtime.Device{{ContainerPath: "/dev/fuse", HostPath: "/dev/fuse", Permissions: "rw"}},
		CDIDevices:  []*runtime.CDIDevice{{Name: "vendor.example/gpu=0"}},
		Labels:      map[string]string{"io.kubernetes.container.name": "app", "tier": "front"},
		Annotations: map[string]string{"io.kubernetes.container.hash": "4f2a", "io.kubernetes.container.restartCount": "2"},
		LogPath:     "app/2.log",
		Stdin:       true,
		StdinOnce:   true,
		Tty:         true,
		StopSignal:  runtime.Signal_SIGNAL_SIGUSR1,
		Linux: &runtime.LinuxContainerConfig{
			Resources: &runtime.LinuxContainerResources{
				CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 256 << 20, OomScoreAdj: 100,
				CpusetCpus: "0-1", CpusetMems: "0", MemorySwapLimitInBytes: 256 << 20,
				HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 0}, {PageSize: "1GB", Limit: 1 << 30}},
				Unified:        map[string]string{"memory.high": "200000000"},
			},
			SecurityContext: &runtime.LinuxContainerSecurityContext{
				Capabilities: &runtime.Capability{AddCapabilities: []string{"NET_ADMIN", "sys_time"}, DropCapabilities: []string{"MKNOD"},
					AddAmbientCapabilities: []string{"NET_BIND_SERVICE"}},
				NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_POD, Pid: runtime.NamespaceMode_CONTAINER,
					Ipc: runtime.NamespaceMode_POD, UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: mapping, Gids: mapping}},
				SelinuxOptions:           &runtime.SELinuxOption{User: "system_u", Role: "system_r", Type: "container_t", Level: "s0:c1,c2"},
				RunAsUser:                &runtime.Int64Value{Value: 1000},
				RunAsGroup:               &runtime.Int64Value{Value: 3000},
				ReadonlyRootfs:           true,
				SupplementalGroups:       []int64{4000, 4001},
				SupplementalGroupsPolicy: runtime.SupplementalGroupsPolicy_Merge,
				NoNewPrivs:               true,
				MaskedPaths:              []string{"/proc/kcore", "/proc/keys"},
				ReadonlyPaths:            []string{"/proc/sys", "/proc/bus"},
				Seccomp:                  &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "/var/lib/kubelet/seccomp/audit.json"},
				Apparmor:                 &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "k8s-web"},
			},
		},
	}
}

// v1SpecOpts are the spec builder's options for the fixture: the image's
// users, its device and its Localhost seccomp profile.
func v1SpecOpts() []oci.Opt {
	img := fstest.MapFS{
		"etc/passwd": {Data: []byte("root:x:0:0::/root:/bin/sh\nnginx:x:101:101::/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n")},
		"etc/group":  {Data: []byte("root:x:0:\nnginx:x:101:\napp:x:1000:\nstaff:x:50:app\n")},
	}
	return []oci.Opt{oci.WithImageFS(img), oci.WithDeviceLookup(v1Devices{}),
		oci.WithProfileLoader(func(context.Context, string) ([]byte, error) {
			return []byte(`{"defaultAction":"SCMP_ACT_LOG","syscalls":[{"names":["reboot"],"action":"SCMP_ACT_ERRNO"}]}`), nil
		})}
}

type v1Devices struct{}

func (v1Devices) DeviceInfo(string) (oci.Device, error) {
	return oci.Device{Type: "c", Major: 10, Minor: 229, Mode: 0o666}, nil
}

// v1Checkpoint is a fixture's checkpoint: its version and its data.
func v1Checkpoint(t *testing.T, kind, id string) (int, json.RawMessage) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata/v1/checkpoints", kind, id+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Version int
		Data    json.RawMessage
	}
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	return env.Version, env.Data
}

// v1SpecInput is what the engine passes the spec builder for the fixture's
// container in the fixture's pod, its image volume mounted
// (mountImageVolumes), as the v1 engine passed it.
func v1SpecInput(pod sandbox.Pod, c sandbox.Container) oci.Input {
	cfg := c.Config
	cfg.Mounts = slices.Clone(cfg.Mounts)
	cfg.Mounts[3].HostPath = c.Bundle + "/imagevolumes/3/weights"
	cfg.Mounts[3].Image, cfg.Mounts[3].ImageSubPath = "", ""
	return oci.Input{
		ID: c.ID, SandboxID: pod.ID, Config: cfg, Pod: pod.Config.ContainerPod(),
		Image: ocispec.ImageConfig{Entrypoint: []string{"/docker-entrypoint.sh"}, Cmd: []string{"nginx"}, User: "nginx",
			Env: []string{"NGINX_VERSION=1.27.0", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, WorkingDir: "/",
			StopSignal: "SIGQUIT"},
		ImageName:  c.ImageRef,
		RootfsPath: c.Rootfs(),
		Namespaces: oci.PodNamespaces{Network: pod.NetNS, IPC: pod.NS["ipc"], UTS: pod.NS["uts"], User: pod.NS["user"]},
		Files: oci.PodFiles{Hosts: pod.Dir + "/hosts", ResolvConf: pod.Dir + "/resolv.conf", Hostname: pod.Dir + "/hostname",
			Shm: pod.Shm},
		CgroupParent: pod.Cgroup,
		Host: oci.Host{CgroupV2: true, SwapAccounting: true, RecursiveReadOnly: true, UserNamespaces: true,
			MinOOMScoreAdj: -1000, AppArmor: true, RuntimeDefaultSeccomp: oci.SeccompBuiltin},
	}
}

// assertV1Spec builds the spec of container c in pod and compares it with
// the one the version-1 engine built.
func assertV1Spec(t *testing.T, pod sandbox.Pod, c sandbox.Container) {
	t.Helper()
	res, err := oci.Build(context.Background(), v1SpecInput(pod, c), v1SpecOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(res.Spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/v1/spec.json")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)+"\n"); diff != "" {
		t.Errorf("spec (-version 1 +now):\n%s", diff)
	}
}
