package nri

import (
	"slices"
	"testing"

	api "github.com/containerd/nri/pkg/api"
	nrigen "github.com/containerd/nri/pkg/runtime-tools/generate"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A plugin's adjustment lands in the OCI spec the runtime is given: every
// kind the issue names (env, mounts, devices, resources, annotations,
// hooks), replacing what it names and keeping the rest.
func TestAdjustSpec(t *testing.T) {
	spec := &specs.Spec{
		Process: &specs.Process{Args: []string{"sleep", "1"}, Env: []string{"PATH=/bin", "KEEP=1", "DROP=1"}},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}, {Destination: "/data", Type: "bind", Source: "/old"}},
		Linux: &specs.Linux{
			Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(1 << 30))}},
		},
		Annotations: map[string]string{"a": "1"},
	}
	adj := &api.ContainerAdjustment{}
	adj.AddEnv("INJECTED", "yes")
	adj.AddEnv("KEEP", "2")
	adj.RemoveEnv("DROP")
	adj.AddAnnotation("example.com/b", "2")
	adj.AddMount(&api.Mount{Destination: "/data", Type: "bind", Source: "/new", Options: []string{"rbind", "ro"}})
	adj.AddDevice(&api.LinuxDevice{Path: "/dev/nri-null", Type: "c", Major: 1, Minor: 3, FileMode: api.FileMode(0o666)})
	adj.AddHooks(&api.Hooks{Prestart: []*api.Hook{{Path: "/bin/true", Args: []string{"true"}}}})
	adj.AddRlimit("RLIMIT_NOFILE", 2048, 1024)
	adj.SetLinuxMemoryLimit(256 << 20)
	adj.SetLinuxCPUShares(512)
	adj.SetLinuxCPUSetCPUs("0")

	if err := nrigen.SpecGenerator(&specEditor{s: spec}).Adjust(adj); err != nil {
		t.Fatal(err)
	}
	for _, kv := range []string{"PATH=/bin", "KEEP=2", "INJECTED=yes"} {
		if !slices.Contains(spec.Process.Env, kv) {
			t.Errorf("env %v lacks %s", spec.Process.Env, kv)
		}
	}
	if slices.Contains(spec.Process.Env, "DROP=1") {
		t.Errorf("env %v keeps DROP", spec.Process.Env)
	}
	if spec.Annotations["a"] != "1" || spec.Annotations["example.com/b"] != "2" {
		t.Errorf("annotations = %v", spec.Annotations)
	}
	var data []specs.Mount
	for _, m := range spec.Mounts {
		if m.Destination == "/data" {
			data = append(data, m)
		}
	}
	if len(data) != 1 || data[0].Source != "/new" || len(spec.Mounts) != 2 {
		t.Errorf("mounts = %+v", spec.Mounts)
	}
	if d := spec.Linux.Devices; len(d) != 1 || d[0].Path != "/dev/nri-null" || d[0].Major != 1 || d[0].Minor != 3 {
		t.Errorf("devices = %+v", d)
	}
	if h := spec.Hooks; h == nil || len(h.Prestart) != 1 || h.Prestart[0].Path != "/bin/true" { //nolint:staticcheck // NRI adjusts the prestart hooks it names
		t.Errorf("hooks = %+v", h)
	}
	if r := spec.Process.Rlimits; len(r) != 1 || r[0].Type != "RLIMIT_NOFILE" || r[0].Hard != 2048 || r[0].Soft != 1024 {
		t.Errorf("rlimits = %+v", r)
	}
	res := spec.Linux.Resources
	if *res.Memory.Limit != 256<<20 || res.CPU == nil || *res.CPU.Shares != 512 || res.CPU.Cpus != "0" {
		t.Errorf("resources = %+v / %+v", res.Memory, res.CPU)
	}
}

func ptr[T any](v T) *T { return &v }
