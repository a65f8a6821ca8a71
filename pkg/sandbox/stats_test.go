package sandbox

import (
	"context"
	"testing"
	"time"
)

func TestCPUSamplesRate(t *testing.T) {
	s := cpuSamples{last: map[string]cpuSample{}}
	t0 := time.Unix(1000, 0)
	if r := s.rate("c", t0, 1e9); r != nil {
		t.Errorf("first sample gave a rate: %d", *r)
	}
	// Half a core over 2 s.
	if r := s.rate("c", t0.Add(2*time.Second), 2e9); r == nil || *r != 5e8 {
		t.Errorf("rate = %v, want 5e8", r)
	}
	// A reading soon after keeps the older sample as its base.
	if r := s.rate("c", t0.Add(2500*time.Millisecond), 2.5e9); r == nil || *r != 1e9 {
		t.Errorf("rate over a short window = %v, want 1e9", r)
	}
	if r := s.rate("c", t0.Add(3*time.Second), 1); r != nil {
		t.Errorf("usage going back (a new cgroup) gave a rate: %d", *r)
	}
	s.forget("c")
	if len(s.last) != 0 {
		t.Error("sample kept after forget")
	}
}

func TestStatsOfPodsAndContainers(t *testing.T) {
	e := newContainerEnv(t)
	ctx := context.Background()
	pod, c := e.podWithContainer(t)
	ct, _ := e.m.Container(c)
	e.f.mu.Lock()
	e.f.cgroups[ct.CgroupPath] = true // the fake runtime makes no cgroup
	e.f.mu.Unlock()
	if got := e.m.ListContainerStats(ctx, ContainerFilter{}); len(got) != 0 {
		t.Errorf("stats of a container that is not running: %+v", got)
	}
	if err := e.m.StartContainer(ctx, c); err != nil {
		t.Fatal(err)
	}
	cs := e.m.ListContainerStats(ctx, ContainerFilter{PodID: pod[:6]})
	if len(cs) != 1 || cs[0].Cgroup == nil || cs[0].WritableLayer == nil || cs[0].WritableLayer.UsedBytes != 4096 {
		t.Fatalf("container stats = %+v", cs)
	}
	// The fake cgroup holds this test process.
	if p := cs[0].Processes; p == nil || p.Processes != 1 || p.Threads == 0 || p.FileDescriptors == 0 {
		t.Errorf("process counts = %+v", p)
	}
	if got := e.m.ListContainerStats(ctx, ContainerFilter{Labels: map[string]string{"no": "match"}}); len(got) != 0 {
		t.Errorf("label filter not honoured: %d", len(got))
	}
	ps := e.m.ListPodStats(ctx, PodFilter{})
	if len(ps) != 1 || ps[0].Cgroup == nil || ps[0].Processes != 1 || len(ps[0].Network) != 2 || len(ps[0].Containers) != 1 {
		t.Fatalf("pod stats = %+v", ps)
	}
	if _, err := e.m.PodStats(ctx, "nope"); err == nil {
		t.Error("stats of an unknown pod")
	}
	if err := e.m.RemovePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if n := len(e.m.samples.last); n != 0 {
		t.Errorf("%d CPU samples left after the pod went", n)
	}
}
