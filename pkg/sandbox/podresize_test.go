package sandbox

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/cgroup"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestUpdatePodResources(t *testing.T) {
	f, dir := newFakes(), t.TempDir()
	f.controllers = map[string]bool{"cpu": true, "memory": true, "pids": true}
	m := newTestManager(t, f, dir)
	ctx := context.Background()
	id, err := m.RunPod(ctx, podConfig("p"))
	if err != nil {
		t.Fatal(err)
	}
	pod, _ := m.Pod(id)
	res := &ctrconfig.Resources{MemoryLimit: 256 << 20, CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 512}
	overhead := &ctrconfig.Resources{MemoryLimit: 16 << 20, CPUPeriod: 100000, CPUQuota: 10000, CPUShares: 10}
	if err := m.UpdatePodResources(ctx, id, res, overhead); err != nil {
		t.Fatal(err)
	}
	got := f.updates[pod.Cgroup]
	if got == nil || got.Memory == nil || *got.Memory.Limit != 272<<20 || *got.CPU.Quota != 60000 || *got.CPU.Shares != 522 {
		t.Fatalf("pod cgroup update = %+v", got)
	}
	// Recorded: a restart keeps the pod's new resources.
	m2 := newTestManager(t, f, dir)
	after, err := m2.Pod(id)
	if err != nil || after.Config.Resources.MemoryLimit != 256<<20 || after.Config.Overhead.CPUShares != 10 {
		t.Errorf("recorded resources after restart = %+v, %+v (%v)", after.Config.Resources, after.Config.Overhead, err)
	}

	// A pod kubelet made the cgroup of is resized by kubelet: recorded only.
	cfg := podConfig("k")
	cfg.CgroupParent = "/kubepods/podk"
	kid, err := m2.RunPod(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	delete(f.updates, "/kubepods/podk")
	if err := m2.UpdatePodResources(ctx, kid, res, nil); err != nil {
		t.Fatal(err)
	}
	if _, touched := f.updates["/kubepods/podk"]; touched {
		t.Error("kubelet's pod cgroup was written")
	}

	for _, tt := range []struct {
		name string
		id   string
		res  *ctrconfig.Resources
		want error
	}{
		{"no resources", id, nil, errdefs.ErrInvalidArgument},
		{"unknown pod", "nope", res, errdefs.ErrNotFound},
		{"bad cpuset", id, &ctrconfig.Resources{CpusetCPUs: "x-y"}, errdefs.ErrInvalidArgument},
	} {
		if err := m2.UpdatePodResources(ctx, tt.id, tt.res, nil); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if err := m2.StopPod(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := m2.UpdatePodResources(ctx, id, res, nil); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("resize of a stopped pod: %v, want FailedPrecondition", err)
	}
}

// fakeVM is a backend whose pods run in VMs of a fixed memory size.
type fakeVM struct {
	*fakeRuntime
	memory int64
}

func (fakeVM) ContainerControllers(*Pod) (map[string]bool, error) { return nil, nil }

func (fakeVM) ContainerCgroupStats(context.Context, *Pod, *Container) (cgroup.Stats, *ProcessCounts, error) {
	return cgroup.Stats{}, nil, errdefs.ErrNotFound
}

func (fakeVM) UpdateContainerCgroup(context.Context, *Pod, *Container, *specs.LinuxResources) error {
	return nil
}

func (v fakeVM) FitPodResources(_ *Pod, res *specs.LinuxResources) (PodResize, error) {
	if res.Memory != nil && res.Memory.Limit != nil && *res.Memory.Limit > v.memory {
		return ResizeWithinSandbox, fmt.Errorf("more than the VM has: %w", errdefs.ErrInvalidArgument)
	}
	return ResizeWithinSandbox, nil
}

// A vm pod is resized within its VM and refused beyond it; its config
// keeps the resources the VM was sized from.
func TestUpdatePodResourcesOfAVMPod(t *testing.T) {
	f, dir := newFakes(), t.TempDir()
	m, err := New(Options{
		StateDir: filepath.Join(dir, "state"), CheckpointDir: filepath.Join(dir, "checkpoints"), DefaultHandler: "vm",
		Backends: map[string]Backend{"vm": fakeVM{newFakeRuntime(f), 512 << 20}}, Network: f, Cgroups: f, CgroupRoot: "/cradle-test",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg := podConfig("v")
	cfg.Resources = &ctrconfig.Resources{MemoryLimit: 128 << 20}
	id, err := m.RunPod(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.UpdatePodResources(ctx, id, &ctrconfig.Resources{MemoryLimit: 384 << 20}, nil); err != nil {
		t.Fatalf("within the VM: %v", err)
	}
	if err := m.UpdatePodResources(ctx, id, &ctrconfig.Resources{MemoryLimit: 1 << 30}, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("beyond the VM: %v, want InvalidArgument", err)
	}
	pod, _ := m.Pod(id)
	if got := pod.Config.Resources.MemoryLimit; got != 128<<20 {
		t.Errorf("the VM's sizing resources became %d", got)
	}
	if len(f.updates) != 0 {
		t.Errorf("host cgroups written: %v", f.updates)
	}
}
