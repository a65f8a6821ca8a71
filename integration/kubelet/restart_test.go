package kubelet

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// snapshot is what cradle runs for kubelet: container ID → pod/name@attempt
// started at.
type snapshot map[string]string

func (e *env) snapshot(t *testing.T) snapshot {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	r, err := e.cri.ListContainers(ctx, &runtime.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	s := snapshot{}
	for _, c := range r.GetContainers() {
		if c.GetState() != runtime.ContainerState_CONTAINER_RUNNING {
			continue // kubelet's garbage collection may take dead ones meanwhile
		}
		st, err := e.cri.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: c.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		s[c.GetId()] = fmt.Sprintf("%s/%s@%d %s started %d", c.GetLabels()["io.kubernetes.pod.name"], c.GetMetadata().GetName(),
			c.GetMetadata().GetAttempt(), c.GetState(), st.GetStatus().GetStartedAt())
	}
	return s
}

func restartCounts(t *testing.T) map[string]int32 {
	t.Helper()
	ps, err := pods()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int32{}
	for name, p := range ps {
		for _, c := range p.Status.ContainerStatuses {
			out[name+"/"+c.Name] = c.RestartCount
		}
	}
	return out
}

// checkKill9: cradle killed -9 under a running kubelet and started again:
// every container keeps running (same IDs, same start times), kubelet
// makes no duplicates and counts no restarts.
func checkKill9(t *testing.T, e *env) {
	before, counts := e.snapshot(t), restartCounts(t)
	e.kill9Cradle()
	time.Sleep(5 * time.Second) // kubelet meets a dead socket for a while
	restart := time.Now()
	e.startCradle()
	names := make([]string, 0, len(counts))
	for k := range counts {
		names = append(names, strings.Split(k, "/")[0])
	}
	err := waitFor(2*time.Minute, time.Second, func() error {
		if _, err := get(plainClient, fmt.Sprintf("http://127.0.0.1:%d/healthz", healthzPort)); err != nil {
			return err
		}
		ps, err := pods()
		if err != nil {
			return err
		}
		for _, n := range names {
			if p := ps[n]; p == nil || !podReady(p) {
				return fmt.Errorf("pod %s not Ready: %s", n, describe(p))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after cradle's restart: %v", err)
	}
	t.Logf("cradle restarted: kubelet healthy and all pods Ready %.1fs later", time.Since(restart).Seconds())
	time.Sleep(15 * time.Second) // three of kubelet's sync periods
	after := e.snapshot(t)
	if diff := diffSnapshots(before, after); diff != "" {
		t.Errorf("containers changed across cradle's kill -9:\n%s", diff)
	}
	if now := restartCounts(t); fmt.Sprint(now) != fmt.Sprint(counts) {
		t.Errorf("restart counts changed across cradle's kill -9: %v → %v", counts, now)
	}
	t.Logf("%d containers kept their IDs and start times, no duplicates, no restarts counted", len(after))
}

func diffSnapshots(a, b snapshot) string {
	var out []string
	for id, v := range a {
		if w, ok := b[id]; !ok {
			out = append(out, "- "+id[:12]+" "+v)
		} else if w != v {
			out = append(out, "~ "+id[:12]+" "+v+" → "+w)
		}
	}
	for id, w := range b {
		if _, ok := a[id]; !ok {
			out = append(out, "+ "+id[:12]+" "+w)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// checkInStep: after cradle's restart kubelet still starts a new pod and
// takes a removed one away, leaving nothing.
func checkInStep(t *testing.T, e *env, w *watcher) {
	late := pod("late-comer", staticPods(e.path("hostdata"))["qos-besteffort"].Spec)
	start := time.Now()
	e.writeManifest(t, late)
	if _, err := w.waitReady([]string{"late-comer"}, 2*time.Minute); err != nil {
		t.Fatalf("a pod added after cradle's restart: %v", err)
	}
	t.Logf("a pod added after cradle's restart is Ready in %.1fs", time.Since(start).Seconds())
	e.removeAndCheckLeaks(t, "volumes")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.cri.Status(ctx, &runtime.StatusRequest{}); err != nil {
		t.Errorf("cradle status: %v", err)
	}
}
