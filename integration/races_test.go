package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// raceRound is one round of a race test: a fresh pod on handler, calls
// made at once, then the daemon must match the host, let everything be
// removed and leave the census where it was.
type raceRound struct {
	t        *testing.T
	d        *daemon
	image    string
	baseline map[string][]string
	tags     tagSet
}

func newRaceRound(t *testing.T) *raceRound {
	d, image := startFeatureDaemon(t)
	return &raceRound{t: t, d: d, image: image, baseline: census(t, d)}
}

// pod runs a pod for round k (runc and crun in turn).
func (r *raceRound) pod(ctx context.Context, k int) (string, *runtime.PodSandboxConfig) {
	name := fmt.Sprintf("race-%d", k)
	cfg := podSandboxConfig(name)
	cfg.LogDirectory = filepath.Join(r.d.dir, "kubelet-logs", name)
	pod, err := r.d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handlers[k%len(handlers)]})
	if err != nil {
		r.t.Fatal(err)
	}
	return pod.PodSandboxId, cfg
}

// createRequest is a container running `sleep tag`, recorded in r.tags.
func (r *raceRound) createRequest(pod string, cfg *runtime.PodSandboxConfig, name string, tag int) *runtime.CreateContainerRequest {
	r.tags.add(tag)
	return &runtime.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: name}, Image: spec(r.image), LogPath: name + ".log",
			Command: []string{"sleep", strconv.Itoa(tag)}, Linux: &runtime.LinuxContainerConfig{}}}
}

// all makes the calls at once and waits for them, then checks the round.
func (r *raceRound) all(k int, calls ...func()) {
	var wg sync.WaitGroup
	for _, call := range calls {
		wg.Add(1)
		go func() { defer wg.Done(); call() }()
	}
	wg.Wait()
	checkListed(r.t, r.d, r.tags.processes)
	r.noneRunsInAStoppedPod(k)
	removeAll(r.t, r.d)
	if left := r.tags.processes(); len(left) > 0 {
		r.t.Errorf("round %d: container processes still run after everything was removed: %v", k, left)
	}
	if diff := leakDiff(r.t, r.d, r.baseline); diff != "" {
		r.t.Fatalf("round %d: leaked (-before +after):\n%s", k, diff)
	}
}

// noneRunsInAStoppedPod: once StopPodSandbox has returned, none of the
// pod's containers runs (a start that raced the stop either came first
// and was stopped, or came after and was refused).
func (r *raceRound) noneRunsInAStoppedPod(k int) {
	ctx := ctxT(r.t)
	pods, err := r.d.Runtime.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		r.t.Fatal(err)
	}
	ctrs, err := r.d.Runtime.ListContainers(ctx, &runtime.ListContainersRequest{})
	if err != nil {
		r.t.Fatal(err)
	}
	for _, c := range ctrs.Containers {
		for _, p := range pods.Items {
			if p.Id == c.PodSandboxId && p.State != runtime.PodSandboxState_SANDBOX_READY && c.State == runtime.ContainerState_CONTAINER_RUNNING {
				r.t.Errorf("round %d: container %s (%s) runs in the stopped pod %s", k, c.Id, c.Metadata.GetName(), p.Id)
			}
		}
	}
}

// TestCallsRaceOnOneContainer: every call kubelet or crictl can make on a
// container (start, stop, remove, exec, stats, status, update, log
// reopen), all at once on one created or running container; whatever
// order they take, nothing of it stays behind (a start or update that
// waited for the removal once left the removed container's checkpoint,
// which brought it back at the next start).
func TestCallsRaceOnOneContainer(t *testing.T) {
	r := newRaceRound(t)
	for k := 0; k < 24; k++ {
		ctx := ctxT(t)
		pod, cfg := r.pod(ctx, k)
		ctr, err := r.d.Runtime.CreateContainer(ctx, r.createRequest(pod, cfg, "c", 930000+k))
		if err != nil {
			t.Fatal(err)
		}
		id := ctr.ContainerId
		if k%4 < 2 {
			if _, err := r.d.Runtime.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id}); err != nil {
				t.Fatal(err)
			}
		}
		rt := r.d.Runtime
		calls := []func(){
			func() { _, _ = rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id}) },
			func() { _, _ = rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: 0}) },
			func() { _, _ = rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id}) },
			func() {
				_, _ = rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", "sleep 1"}, Timeout: 5})
			},
			func() { _, _ = rt.ContainerStats(ctx, &runtime.ContainerStatsRequest{ContainerId: id}) },
			func() {
				_, _ = rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id, Verbose: true})
			},
			func() {
				_, _ = rt.UpdateContainerResources(ctx, &runtime.UpdateContainerResourcesRequest{ContainerId: id,
					Linux: &runtime.LinuxContainerResources{CpuShares: 512}})
			},
			func() { _, _ = rt.ReopenContainerLog(ctx, &runtime.ReopenContainerLogRequest{ContainerId: id}) },
		}
		// A different call first in each round.
		r.all(k, append(calls[k%len(calls):], calls[:k%len(calls)]...)...)
	}
}

// TestCreatesRaceWithThePodsEnd: containers are created and started in a
// pod while the pod is stopped or removed; none is left running (a start
// after the stop is refused), listed under a pod that is gone, or leaking.
func TestCreatesRaceWithThePodsEnd(t *testing.T) {
	r := newRaceRound(t)
	for k := 0; k < 24; k++ {
		ctx := ctxT(t)
		pod, cfg := r.pod(ctx, k)
		rt := r.d.Runtime
		var calls []func()
		for c := 0; c < 3; c++ {
			req := r.createRequest(pod, cfg, fmt.Sprint("c", c), 940000+k*10+c)
			calls = append(calls, func() {
				if ctr, err := rt.CreateContainer(ctx, req); err == nil {
					_, _ = rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: ctr.ContainerId})
				}
			})
		}
		if k%3 == 0 {
			calls = append(calls, func() { _, _ = rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod}) })
		} else {
			calls = append(calls, func() { _, _ = rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pod}) })
		}
		r.all(k, calls...)
	}
}
