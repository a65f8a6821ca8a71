package kubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// orphan is a pod and container made over the CRI with no log directory
// or log path.
type orphan struct{ pod, ctr string }

func (e *env) makeOrphan(t *testing.T) orphan {
	ctx := ctxT(t, 3*time.Minute)
	if _, err := e.images.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: busybox}}); err != nil {
		t.Fatalf("pull %s: %v", busybox, err)
	}
	pcfg := &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "orphan", Namespace: "crictl", Uid: "orphan-uid", Attempt: 0},
		Hostname: "orphan", Linux: &runtime.LinuxPodSandboxConfig{}}
	p, err := e.cri.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatalf("orphan pod: %v", err)
	}
	c, err := e.cri.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: p.GetPodSandboxId(), SandboxConfig: pcfg,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "orphan"}, Image: &runtime.ImageSpec{Image: busybox},
			Command: []string{"sh", "-c", "echo orphan; exec sleep 100000"}, Linux: &runtime.LinuxContainerConfig{}}})
	if err != nil {
		t.Fatalf("orphan container: %v", err)
	}
	if _, err := e.cri.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: c.GetContainerId()}); err != nil {
		t.Fatalf("start orphan container: %v", err)
	}
	return orphan{pod: p.GetPodSandboxId(), ctr: c.GetContainerId()}
}

// checkOrphan: kubelet kills the orphan pod and garbage-collects its
// container (every minute); removing its logs must not touch kubelet's
// working directory (issue 13, item 1: `<log path>*` with an empty path).
func checkOrphan(t *testing.T, e *env, o orphan) {
	err := waitFor(3*time.Minute, 2*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := e.cri.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{Id: o.ctr}})
		if err != nil {
			return err
		}
		if len(r.GetContainers()) > 0 {
			return fmt.Errorf("orphan container still there (%s)", r.GetContainers()[0].GetState())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("kubelet did not garbage-collect the orphan container: %v", err)
	}
	if _, err := os.Stat(e.path("cwd", "canary")); err != nil {
		t.Fatalf("kubelet removed the orphan's logs with a pattern that matched its working directory: canary %v", err)
	}
	t.Logf("kubelet garbage-collected the CRI-made orphan container; its working directory keeps its canary")
}

// podIDs are what cradle holds for one of kubelet's pods.
type podIDs struct {
	uid        string
	sandboxes  []string
	containers []string
}

func (e *env) idsOf(t *testing.T, name string) podIDs {
	t.Helper()
	p := mustPod(t, name)
	ids := podIDs{uid: string(p.UID)}
	ctx := ctxT(t, 30*time.Second)
	s, err := e.cri.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{
		LabelSelector: map[string]string{"io.kubernetes.pod.uid": ids.uid}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range s.GetItems() {
		ids.sandboxes = append(ids.sandboxes, sb.GetId())
		c, err := e.cri.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: sb.GetId()}})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range c.GetContainers() {
			ids.containers = append(ids.containers, x.GetId())
		}
	}
	if len(ids.sandboxes) == 0 || len(ids.containers) == 0 {
		t.Fatalf("cradle has no pod or containers for %s (uid %s)", name, ids.uid)
	}
	return ids
}

func (ids podIDs) keys() []string {
	return append(append([]string{ids.uid}, ids.sandboxes...), ids.containers...)
}

// removeAndCheckLeaks removes a pod's manifest, waits until kubelet and
// cradle have let go of it (kubelet removes dead sandboxes in its
// once-a-minute garbage collection) and looks for anything left of it.
func (e *env) removeAndCheckLeaks(t *testing.T, name string) time.Duration {
	ids := e.idsOf(t, name)
	start := time.Now()
	e.removeManifest(t, name)
	// Stopped: no sandbox of the pod Ready any more (its containers stop first).
	err := waitFor(60*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := e.cri.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{
			LabelSelector: map[string]string{"io.kubernetes.pod.uid": ids.uid},
			State:         &runtime.PodSandboxStateValue{State: runtime.PodSandboxState_SANDBOX_READY}}})
		if err != nil {
			return err
		}
		if len(s.GetItems()) > 0 {
			return fmt.Errorf("pod %s still Ready in cradle", name)
		}
		return nil
	})
	gone := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	err = waitFor(3*time.Minute, 2*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := e.cri.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{
			LabelSelector: map[string]string{"io.kubernetes.pod.uid": ids.uid}}})
		if err != nil {
			return err
		}
		if len(s.GetItems()) > 0 {
			return fmt.Errorf("sandbox %s still in cradle (%s)", s.GetItems()[0].GetId(), s.GetItems()[0].GetState())
		}
		return e.leaksOf(ids)
	})
	if err != nil {
		t.Errorf("pod %s removed: %v", name, err)
	}
	t.Logf("pod %s: stopped %.1fs after its manifest was removed, removed from cradle %.1fs after, nothing left", name, gone.Seconds(), time.Since(start).Seconds())
	return gone
}

// leaksOf looks for the pod's mounts, cgroups, processes, files and a
// bridge port more than the Ready pods need.
func (e *env) leaksOf(ids podIDs) error {
	keys := ids.keys()
	var leaks []string
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && containsAny(f[4], keys) {
			leaks = append(leaks, "mount "+f[4])
		}
	}
	for _, d := range cgroupDirs(e.t, keys...) {
		leaks = append(leaks, "cgroup "+d)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cg, _ := os.ReadFile(p + "/cgroup")
		cmd, _ := os.ReadFile(p + "/cmdline")
		if containsAny(string(cg), keys) || containsAny(string(cmd), keys) {
			leaks = append(leaks, fmt.Sprintf("process %s %q", filepath.Base(p), strings.ReplaceAll(string(cmd), "\x00", " ")))
		}
	}
	_ = filepath.WalkDir(e.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && containsAny(d.Name(), keys) {
			leaks = append(leaks, "file "+p)
		}
		return nil
	})
	if err := e.bridgePortsMatch(); err != nil {
		leaks = append(leaks, err.Error())
	}
	if len(leaks) > 0 {
		return fmt.Errorf("leaked: %s", strings.Join(leaks, "; "))
	}
	return nil
}

// bridgePortsMatch: one veth on the bridge per Ready pod with a network of
// its own.
func (e *env) bridgePortsMatch() error {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return err
	}
	ports := 0
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			ports++
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.cri.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{
		State: &runtime.PodSandboxStateValue{State: runtime.PodSandboxState_SANDBOX_READY}}})
	if err != nil {
		return err
	}
	want := 0
	for _, sb := range s.GetItems() {
		st, err := e.cri.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: sb.GetId()})
		if err != nil {
			return err
		}
		if st.GetStatus().GetLinux().GetNamespaces().GetOptions().GetNetwork() != runtime.NamespaceMode_NODE {
			want++
		}
	}
	if ports != want {
		return fmt.Errorf("%d veths on %s for %d Ready pods with a network of their own", ports, bridge, want)
	}
	return nil
}

// checkGracefulRemoval: the preStop hook runs, SIGTERM reaches the polite
// container, the stubborn one is killed after the grace period, and
// nothing is left of the pod.
func checkGracefulRemoval(t *testing.T, e *env) {
	gone := e.removeAndCheckLeaks(t, "graceful")
	dir := e.path("hostdata", "graceful")
	for _, f := range []string{"prestop", "term"} {
		if b, err := os.ReadFile(filepath.Join(dir, f)); err != nil || len(b) == 0 {
			t.Errorf("graceful: %s was not recorded: %v", f, err)
		}
	}
	if gone < (gracePeriod-1)*time.Second || gone > (gracePeriod+15)*time.Second {
		t.Errorf("graceful: pod went %.1fs after its manifest; want about its grace period of %ds", gone.Seconds(), gracePeriod)
	}
}
