package sandbox

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// richContainerConfig has a value in every field a checkpoint keeps.
func richContainerConfig() ctrconfig.Container {
	mapping := []ctrconfig.IDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	uid, gid := int64(1000), int64(3000)
	return ctrconfig.Container{
		Name: "app", Attempt: 2, Image: "nginx:1.27", UserSpecifiedImage: "nginx",
		Command: []string{"/bin/sh"}, Args: []string{"-c", "sleep 1"}, WorkingDir: "/srv",
		Env: []ctrconfig.EnvVar{{Key: "A", Value: "1"}, {Key: "EMPTY"}},
		Mounts: []ctrconfig.Mount{
			{ContainerPath: "/d", HostPath: "/h", Readonly: true, RecursiveReadOnly: true, SELinuxRelabel: true,
				Propagation: ctrconfig.PropagationHostToContainer, UIDMappings: mapping, GIDMappings: mapping, Options: []string{"noexec"}},
			{ContainerPath: "/img", Readonly: true, Image: "busybox:1", ImageSubPath: "bin"},
		},
		Devices: []ctrconfig.Device{{ContainerPath: "/dev/fuse", HostPath: "/dev/fuse", Permissions: "rw"}}, CDIDevices: []string{"v.example/gpu=0"},
		Labels: map[string]string{"l": "1"}, Annotations: map[string]string{"a": "2"}, LogPath: "app/2.log",
		Stdin: true, StdinOnce: true, TTY: true, StopSignal: "SIGUSR1",
		Resources: &ctrconfig.Resources{CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 512, MemoryLimit: 1 << 28, MemorySwapLimit: 1 << 28,
			OOMScoreAdj: 100, CpusetCPUs: "0", CpusetMems: "0", HugepageLimits: []ctrconfig.HugepageLimit{{PageSize: "2MB", Limit: 1 << 21}},
			Unified: map[string]string{"memory.high": "1"}},
		Security: ctrconfig.Security{
			Privileged: true, Capabilities: ctrconfig.Capabilities{Add: []string{"NET_ADMIN"}, Drop: []string{"ALL"}, AddAmbient: []string{"KILL"}},
			Namespaces: ctrconfig.Namespaces{Network: ctrconfig.NamespaceNode, PID: ctrconfig.NamespaceTarget, IPC: ctrconfig.NamespaceContainer,
				TargetID: "t1", UserNS: &ctrconfig.UserNS{Mode: ctrconfig.NamespacePod, UIDs: mapping, GIDs: mapping}},
			SELinux:   &ctrconfig.SELinux{User: "u", Role: "r", Type: "t", Level: "s0"},
			RunAsUser: &uid, RunAsGroup: &gid, RunAsUsername: "app", ReadonlyRootfs: true,
			SupplementalGroups: []int64{4000}, SupplementalGroupsPolicy: ctrconfig.GroupsStrict, NoNewPrivs: true,
			MaskedPaths: []string{"/proc/kcore"}, ReadonlyPaths: []string{"/proc/sys"},
			Seccomp:  &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileLocalhost, LocalhostRef: "/p.json"},
			AppArmor: &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileUnconfined},
		},
	}
}

// A version-2 checkpoint reads back what was written.
func TestCheckpointV2RoundTrip(t *testing.T) {
	m := newTestManager(t, newFakes(), t.TempDir())
	mapping := []ctrconfig.IDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	pod := &Pod{ID: "p1", Handler: "runc", State: PodReady, CreatedAt: time.Unix(1700000000, 0).UTC(), NS: map[string]string{"ipc": "/proc/1/ns/ipc"},
		Config: PodConfig{Name: "web", UID: "u", Namespace: "ns", Hostname: "web", RequestedHostname: "", Network: ctrconfig.NamespacePod,
			PID: ctrconfig.NamespaceContainer, IPC: ctrconfig.NamespaceNode, UserNS: &ctrconfig.IDMappings{UIDs: mapping, GIDs: mapping},
			UserNSNode: true, Privileged: true, Sysctls: map[string]string{"net.x": "1"},
			Resources: &ctrconfig.Resources{MemoryLimit: 1 << 30}, Overhead: &ctrconfig.Resources{CPUShares: 10}}}
	if err := m.save(pod); err != nil {
		t.Fatal(err)
	}
	gotPod, err := m.loadPod(pod.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(pod, gotPod, cmpopts.IgnoreUnexported(Pod{})); diff != "" {
		t.Errorf("pod (-saved +loaded):\n%s", diff)
	}
	c := &Container{ID: "c1", PodID: "p1", Config: richContainerConfig(), State: ContainerRunning, CreatedAt: time.Unix(1700000001, 0).UTC(),
		ImageVolumes: map[int]string{1: "sha256:img"}}
	if err := m.saveContainer(c); err != nil {
		t.Fatal(err)
	}
	gotC, err := m.loadContainer(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, gotC, cmpopts.IgnoreUnexported(Container{})); diff != "" {
		t.Errorf("container (-saved +loaded):\n%s", diff)
	}
}

// v1Configs stands for pkg/cri's reader of version-1 configs.
type v1Configs struct{ pod PodConfig }

func (r v1Configs) PodConfig(raw json.RawMessage) (PodConfig, error) {
	if string(raw) != `{"metadata":{"name":"web"}}` {
		return PodConfig{}, errors.New("unexpected raw config " + string(raw))
	}
	return r.pod, nil
}

func (v1Configs) ContainerConfig(raw json.RawMessage) (ctrconfig.Container, error) {
	return ctrconfig.Container{Name: string(raw)}, nil
}

// A version-1 pod keeps what it recorded, and takes from its CRI config
// (through Options.V1Configs) only what version 1 kept nowhere else; a
// daemon without a reader of version-1 configs cannot read it.
func TestPodCheckpointV1(t *testing.T) {
	dir := t.TempDir()
	m := newTestManager(t, newFakes(), dir)
	v1 := `{"ID":"p1","Handler":"runc","State":1,"Config":{"Name":"web","Hostname":"chosen","LogDirectory":"/logs","Network":2,` +
		`"Raw":{"metadata":{"name":"web"}}}}`
	if err := m.ckpt.Save(podKind, "p1", 1, json.RawMessage(v1)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.loadPod("p1"); !errdefs.IsNotImplemented(err) {
		t.Errorf("without a reader: %v, want NotImplemented", err)
	}
	m.opts.V1Configs = v1Configs{pod: PodConfig{Name: "other", Hostname: "", LogDirectory: "", RequestedHostname: "", Privileged: true,
		UserNSNode: true, Resources: &ctrconfig.Resources{MemoryLimit: 1}, Overhead: &ctrconfig.Resources{CPUShares: 2}}}
	got, err := m.loadPod("p1")
	if err != nil {
		t.Fatal(err)
	}
	want := &Pod{ID: "p1", Handler: "runc", State: PodReady, Config: PodConfig{Name: "web", Hostname: "chosen", LogDirectory: "/logs",
		Network: ctrconfig.NamespaceNode, Privileged: true, UserNSNode: true,
		Resources: &ctrconfig.Resources{MemoryLimit: 1}, Overhead: &ctrconfig.Resources{CPUShares: 2}}}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(Pod{})); diff != "" {
		t.Errorf("pod (-want +got):\n%s", diff)
	}
	c := `{"ID":"c1","PodID":"p1","State":2,"Config":"cfg","LogPath":"/logs/c.log"}`
	if err := m.ckpt.Save(containerKind, "c1", 1, json.RawMessage(c)); err != nil {
		t.Fatal(err)
	}
	gotC, err := m.loadContainer("c1")
	if err != nil {
		t.Fatal(err)
	}
	wantC := &Container{ID: "c1", PodID: "p1", State: ContainerExited, Config: ctrconfig.Container{Name: `"cfg"`}, LogPath: "/logs/c.log"}
	if diff := cmp.Diff(wantC, gotC, cmpopts.IgnoreUnexported(Container{})); diff != "" {
		t.Errorf("container (-want +got):\n%s", diff)
	}
}
