package cri

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// recoveryBackend is a runtime that knows the fixture's container, created
// and not started, and can update its cgroup; nothing else is called.
type recoveryBackend struct{ sandbox.Backend }

func (recoveryBackend) ContainerState(context.Context, *sandbox.Pod, *sandbox.Container) (sandbox.ProcessState, error) {
	return sandbox.ProcessState{Status: sandbox.ProcessCreated}, nil
}

func (recoveryBackend) ContainerControllers(*sandbox.Pod) (map[string]bool, error) { return nil, nil }

func (recoveryBackend) UpdateContainerCgroup(context.Context, *sandbox.Pod, *sandbox.Container, *specs.LinuxResources) error {
	return nil
}

type recoveryNetwork struct{ sandbox.Network }

func (recoveryNetwork) Reconcile(context.Context, []string) error { return nil }

// v1Manager starts an engine on a state directory holding the version-1
// fixtures, as cmd/shim wires it.
func v1Manager(t *testing.T, dir string) *sandbox.Manager {
	t.Helper()
	m, err := sandbox.New(sandbox.Options{
		StateDir: filepath.Join(dir, "pods"), ContainerDir: filepath.Join(dir, "containers"), CheckpointDir: filepath.Join(dir, "checkpoints"),
		DefaultHandler: "runc", Backends: map[string]sandbox.Backend{"runc": recoveryBackend{}}, Network: recoveryNetwork{},
		V1Configs: V1Configs{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

func copyV1Checkpoints(t *testing.T, dir string) {
	t.Helper()
	for _, f := range []string{"pods/" + v1PodID + ".json", "containers/" + v1ContainerID + ".json"} {
		b, err := os.ReadFile(filepath.Join("testdata/v1/checkpoints", f))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "checkpoints", f)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// v1Recorded is the fixture's container as version 1 recorded it, but for
// its config.
func v1Recorded(t *testing.T) sandbox.Container {
	t.Helper()
	_, data := v1Checkpoint(t, "containers", v1ContainerID)
	var v1 struct {
		sandbox.Container
		Config json.RawMessage
	}
	if err := json.Unmarshal(data, &v1); err != nil {
		t.Fatal(err)
	}
	return v1.Container
}

// v1WantPodConfig is the fixture pod's config as the engine keeps it now.
func v1WantPodConfig() sandbox.PodConfig {
	mapping := []ctrconfig.IDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	c := v1PodSandboxConfig()
	return sandbox.PodConfig{
		Name: "web-0", UID: "8a1b2c3d-uid", Namespace: "shop", Attempt: 1, Hostname: "web-0",
		LogDirectory: c.LogDirectory, Labels: c.Labels, Annotations: c.Annotations, Handler: "runc",
		DNS:          &sandbox.DNSConfig{Servers: c.DnsConfig.Servers, Searches: c.DnsConfig.Searches, Options: c.DnsConfig.Options},
		PortMappings: []sandbox.PortMapping{{Protocol: "tcp", ContainerPort: 8080, HostPort: 18080, HostIP: "127.0.0.1"}},
		Network:      ctrconfig.NamespacePod, PID: ctrconfig.NamespaceContainer, IPC: ctrconfig.NamespacePod,
		CgroupParent: "/kubepods/burstable/pod8a1b2c3d-uid", Sysctls: c.Linux.Sysctls,
		UserNS: &ctrconfig.IDMappings{UIDs: mapping, GIDs: mapping},
		Resources: &ctrconfig.Resources{CPUPeriod: 100000, CPUQuota: 150000, CPUShares: 1536, MemoryLimit: 512 << 20,
			HugepageLimits: []ctrconfig.HugepageLimit{{PageSize: "2MB"}}},
		Overhead: &ctrconfig.Resources{CPUShares: 10, MemoryLimit: 64 << 20},
	}
}

// An engine started on a state directory the version-1 engine wrote
// recovers its pod and container, migrated to the engine's types by the
// translation the RPCs use; a new container of the pod gets the spec it
// got then; and what the engine writes next is version 2, which a restart
// reads back.
func TestV1StateDirectoryRecovers(t *testing.T) {
	dir := t.TempDir()
	copyV1Checkpoints(t, dir)
	m := v1Manager(t, dir)
	pod, err := m.Pod(v1PodID)
	if err != nil {
		t.Fatal(err)
	}
	if pod.State != sandbox.PodReady || pod.Handler != "runc" || pod.NetNS != "/proc/4100/ns/net" {
		t.Errorf("pod = %+v", pod)
	}
	if diff := cmp.Diff(v1WantPodConfig(), pod.Config); diff != "" {
		t.Errorf("pod config (-want +got):\n%s", diff)
	}
	c, err := m.Container(v1ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	want := v1Recorded(t)
	want.Config = v1WantContainer()
	if diff := cmp.Diff(want, c, cmpopts.IgnoreUnexported(sandbox.Container{})); diff != "" {
		t.Errorf("container (-want +got):\n%s", diff)
	}
	if got := m.ListContainers(sandbox.ContainerFilter{Labels: map[string]string{"tier": "front"}}); len(got) != 1 {
		t.Errorf("containers by label: %d", len(got))
	}
	assertV1Spec(t, pod, c)

	res := &ctrconfig.Resources{CPUShares: 256, MemoryLimit: 128 << 20}
	if err := m.UpdateContainerResources(context.Background(), v1ContainerID, res); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "checkpoints/containers", v1ContainerID+".json"))
	if err != nil || !json.Valid(b) || string(b[:13]) != `{"version":2,` {
		t.Fatalf("checkpoint after an update: %.40s (%v)", b, err)
	}
	m2 := v1Manager(t, dir)
	c2, err := m2.Container(v1ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	want.Config.Resources, want.Resources = res, c2.Resources
	if diff := cmp.Diff(want, c2, cmpopts.IgnoreUnexported(sandbox.Container{})); diff != "" {
		t.Errorf("container after a version-2 round trip (-want +got):\n%s", diff)
	}
}
