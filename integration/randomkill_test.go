package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestKillAtRandomPoints: two clients (one on runc, one on crun) take pods
// through their whole life (run, create, start, stop, remove) over and
// over, and the daemon is killed (SIGKILL) at a random moment, wherever
// its RPCs are: inside a step, between two, while conmon or the runtime
// works for it. After each restart what it lists matches the host (a
// container it says runs has its one process, none runs that it does not
// list as running), everything can be removed, and the census is back
// where it was. CRADLE_RANDOM_KILLS sets the number of kills (default 8);
// the seed is logged.
func TestKillAtRandomPoints(t *testing.T) {
	d, image := startFeatureDaemon(t)
	baseline := census(t, d)
	kills := 8
	if n, err := strconv.Atoi(os.Getenv("CRADLE_RANDOM_KILLS")); err == nil && n > 0 {
		kills = n
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	var tags tagSet
	for k := 0; k < kills; k++ {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w, handler := range handlers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				podLifecycles(ctx, d.Runtime, d.dir, image, handler, 960000+k*1000+w*100, &tags)
			}()
		}
		// Past the first pod's creation at most times, sometimes within it.
		time.Sleep(time.Duration(rng.IntN(800)) * time.Millisecond)
		d.Kill9()
		cancel()
		wg.Wait()
		d.Start()
		checkListed(t, d, tags.processes)
		removeAll(t, d)
		if left := tags.processes(); len(left) > 0 {
			t.Errorf("kill %d: container processes still run after everything was removed: %v", k, left)
		}
		if diff := leakDiff(t, d, baseline); diff != "" {
			t.Fatalf("kill %d: leaked (-before +after):\n%s", k, diff)
		}
	}
}

// podLifecycles runs pods through their life one after another until an
// RPC fails (the daemon died) or ctx ends; each container runs
// `sleep <tag>` with a tag of its own, recorded in tags before it is
// created.
func podLifecycles(ctx context.Context, rt runtime.RuntimeServiceClient, dir, image, handler string, tag int, tags *tagSet) {
	for i := 0; ctx.Err() == nil; i++ {
		name := fmt.Sprintf("rk-%d", tag+i)
		cfg := podSandboxConfig(name)
		cfg.LogDirectory = filepath.Join(dir, "kubelet-logs", name)
		pod, err := rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
		if err != nil {
			return
		}
		tags.add(tag + i)
		ctr, err := rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: cfg,
			Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "sleeper"}, Image: spec(image), LogPath: "sleeper.log",
				Command: []string{"sleep", strconv.Itoa(tag + i)}, Linux: &runtime.LinuxContainerConfig{}}})
		if err != nil {
			return
		}
		id := ctr.ContainerId
		for _, call := range []func() error{
			func() error {
				_, err := rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id})
				return err
			},
			func() error {
				_, err := rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: 0})
				return err
			},
			func() error {
				_, err := rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id})
				return err
			},
			func() error {
				_, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
				return err
			},
			func() error {
				_, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
				return err
			},
		} {
			if call() != nil {
				return
			}
		}
	}
}

// tagSet is the `sleep` arguments of the containers made so far.
type tagSet struct {
	mu   sync.Mutex
	tags map[string]bool
}

func (s *tagSet) add(tag int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tags == nil {
		s.tags = map[string]bool{}
	}
	s.tags[strconv.Itoa(tag)] = true
}

// processes lists the host's processes that run one of the containers
// (`sleep <tag>`), as "pid tag".
func (s *tagSet) processes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		if len(args) == 2 && args[0] == "sleep" && s.tags[args[1]] {
			out = append(out, e.Name()+" "+args[1])
		}
	}
	return out
}
