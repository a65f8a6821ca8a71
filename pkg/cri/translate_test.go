package cri

import (
	"errors"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/testing/protocmp"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func fullPodConfig() *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: "web", Uid: "u1", Namespace: "ns", Attempt: 2},
		Hostname:     "web-0",
		LogDirectory: "/var/log/pods/ns_web_u1",
		DnsConfig:    &runtime.DNSConfig{Servers: []string{"10.0.0.10"}, Searches: []string{"ns.svc"}, Options: []string{"ndots:5"}},
		PortMappings: []*runtime.PortMapping{
			{Protocol: runtime.Protocol_TCP, ContainerPort: 80, HostPort: 8080, HostIp: "127.0.0.1"},
			{Protocol: runtime.Protocol_UDP, ContainerPort: 53, HostPort: 5353},
		},
		Labels:      map[string]string{"app": "web"},
		Annotations: map[string]string{"a": "b"},
		Linux: &runtime.LinuxPodSandboxConfig{
			CgroupParent: "/kubepods/pod-u1",
			Sysctls:      map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"},
			SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{
				Network: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_CONTAINER, Ipc: runtime.NamespaceMode_POD,
			}},
		},
	}
}

// A PodSandboxConfig is translated field by field into the engine's
// PodConfig, and a pod back into the PodSandboxStatus kubelet reads.
func TestPodTranslationBothWays(t *testing.T) {
	c := fullPodConfig()
	got, err := toPodConfig(c, "runc")
	if err != nil {
		t.Fatal(err)
	}
	want := sandbox.PodConfig{
		Name: "web", UID: "u1", Namespace: "ns", Attempt: 2, Hostname: "web-0", LogDirectory: "/var/log/pods/ns_web_u1",
		Labels: c.Labels, Annotations: c.Annotations, Handler: "runc",
		Network: ctrconfig.NamespaceNode, PID: ctrconfig.NamespaceContainer, IPC: ctrconfig.NamespacePod,
		CgroupParent: "/kubepods/pod-u1", Sysctls: c.Linux.Sysctls, RequestedHostname: "web-0",
		DNS: &sandbox.DNSConfig{Servers: []string{"10.0.0.10"}, Searches: []string{"ns.svc"}, Options: []string{"ndots:5"}},
		PortMappings: []sandbox.PortMapping{
			{Protocol: "tcp", ContainerPort: 80, HostPort: 8080, HostIP: "127.0.0.1"},
			{Protocol: "udp", ContainerPort: 53, HostPort: 5353},
		},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("PodConfig (-want +got):\n%s", diff)
	}

	created := time.Unix(1700000000, 5)
	pod := sandbox.Pod{ID: "p1", Config: got, Handler: "runc", State: sandbox.PodReady, CreatedAt: created,
		IPs: []string{"10.88.0.5", "fd00::5"}}
	st := toPodStatus(pod)
	wantSt := &runtime.PodSandboxStatus{
		Id: "p1", Metadata: c.Metadata, State: runtime.PodSandboxState_SANDBOX_READY, CreatedAt: created.UnixNano(),
		Network: &runtime.PodSandboxNetworkStatus{Ip: "10.88.0.5", AdditionalIps: []*runtime.PodIP{{Ip: "fd00::5"}}},
		Linux: &runtime.LinuxPodSandboxStatus{Namespaces: &runtime.Namespace{Options: &runtime.NamespaceOption{
			Network: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_CONTAINER, Ipc: runtime.NamespaceMode_POD,
		}}},
		Labels: c.Labels, Annotations: c.Annotations, RuntimeHandler: "runc",
	}
	if diff := cmp.Diff(wantSt, st, protocmp.Transform()); diff != "" {
		t.Errorf("PodSandboxStatus (-want +got):\n%s", diff)
	}
	pod.State = sandbox.PodNotReady
	if s := toPodStatus(pod).State; s != runtime.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("a pod not ready is %v", s)
	}
}

func TestPodConfigRefusals(t *testing.T) {
	noMeta := fullPodConfig()
	noMeta.Metadata = nil
	sctp := fullPodConfig()
	sctp.PortMappings = []*runtime.PortMapping{{Protocol: runtime.Protocol_SCTP, ContainerPort: 1}}
	badHost := fullPodConfig()
	badHost.Hostname = "-bad"
	for name, c := range map[string]*runtime.PodSandboxConfig{"nil": nil, "no metadata": noMeta, "sctp": sctp, "hostname": badHost} {
		if _, err := toPodConfig(c, "runc"); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want InvalidArgument", name, err)
		}
	}
}

func TestNamespaceModesRoundTrip(t *testing.T) {
	for _, m := range []runtime.NamespaceMode{runtime.NamespaceMode_POD, runtime.NamespaceMode_CONTAINER, runtime.NamespaceMode_NODE} {
		if got := fromMode(toMode(m)); got != m {
			t.Errorf("%v -> %v", m, got)
		}
	}
	if got := toMode(runtime.NamespaceMode_TARGET); got != ctrconfig.NamespacePod {
		t.Errorf("TARGET (a pod namespace of another container) -> %v", got)
	}
}

func TestContainerStatesRoundTrip(t *testing.T) {
	for _, s := range []sandbox.ContainerState{sandbox.ContainerCreated, sandbox.ContainerRunning, sandbox.ContainerExited, sandbox.ContainerUnknown} {
		if got := fromCRIContainerState(toCRIContainerState(s)); got != s {
			t.Errorf("%v -> %v", s, got)
		}
	}
}

// An engine container becomes the ContainerStatus kubelet reads: times
// in nanoseconds (0 for what has not happened), the image it was asked
// for and the one it runs, the stop signal, the user it runs as, and
// each image volume's image ID.
func TestContainerStatusTranslation(t *testing.T) {
	criCfg := &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: "c", Attempt: 1},
		Labels:   map[string]string{"l": "1"}, Annotations: map[string]string{"a": "2"},
		Mounts: []*runtime.Mount{
			{ContainerPath: "/data", HostPath: "/srv/data"},
			{ContainerPath: "/img", Image: &runtime.ImageSpec{Image: "busybox:1"}},
		},
		Linux: &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{CpuShares: 512}},
	}
	cfg, err := toContainerConfig(criCfg)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Unix(1700000000, 0)
	c := sandbox.Container{
		ID: "c1", Config: cfg, ImageID: "sha256:abc", ImageRef: "busybox:1", State: sandbox.ContainerCreated,
		CreatedAt: created, StopSignal: "SIGQUIT", LogPath: "/var/log/pods/x/c/1.log",
		User:         specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10}},
		ImageVolumes: map[int]string{1: "sha256:vol"},
	}
	st := toContainerStatus(c)
	if st.StartedAt != 0 || st.FinishedAt != 0 || st.CreatedAt != created.UnixNano() {
		t.Errorf("times: created %d started %d finished %d", st.CreatedAt, st.StartedAt, st.FinishedAt)
	}
	if st.State != runtime.ContainerState_CONTAINER_CREATED || st.StopSignal != runtime.Signal_SIGNAL_SIGQUIT ||
		st.Image.GetImage() != "busybox:1" || st.ImageRef != "sha256:abc" || st.ImageId != "sha256:abc" {
		t.Errorf("status = %v", st)
	}
	if got := st.GetUser().GetLinux(); got.GetUid() != 1000 || got.GetGid() != 1000 || !cmp.Equal(got.GetSupplementalGroups(), []int64{10}) {
		t.Errorf("user = %v", got)
	}
	wantMounts := []*runtime.Mount{criCfg.Mounts[0], {ContainerPath: "/img", Image: &runtime.ImageSpec{Image: "busybox:1", ImageRef: "sha256:vol"}}}
	if diff := cmp.Diff(wantMounts, st.Mounts, protocmp.Transform()); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(containerMetadata(c), criCfg.Metadata, protocmp.Transform()); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}
	if st.Resources.GetLinux().GetCpuShares() != 512 {
		t.Errorf("resources = %v", st.Resources)
	}
	c.State, c.StartedAt, c.FinishedAt, c.ExitCode, c.Reason = sandbox.ContainerExited, created.Add(time.Second), created.Add(2*time.Second), 137, "OOMKilled"
	st = toContainerStatus(c)
	if st.StartedAt != created.Add(time.Second).UnixNano() || st.FinishedAt != created.Add(2*time.Second).UnixNano() ||
		st.ExitCode != 137 || st.Reason != "OOMKilled" || st.State != runtime.ContainerState_CONTAINER_EXITED {
		t.Errorf("exited status = %v", st)
	}
}
