package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// eventLog collects one subscriber's events as "TYPE id" lines.
type eventLog struct {
	ch   chan *runtime.ContainerEventResponse
	errc chan error
}

func subscribe(ctx context.Context, t *testing.T, d *daemon) *eventLog {
	t.Helper()
	stream, err := d.Runtime.GetContainerEvents(ctx, &runtime.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	l := &eventLog{ch: make(chan *runtime.ContainerEventResponse, 4096), errc: make(chan error, 1)}
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				l.errc <- err
				return
			}
			l.ch <- ev
		}
	}()
	return l
}

// next waits for n events.
func (l *eventLog) next(t *testing.T, n int) []*runtime.ContainerEventResponse {
	t.Helper()
	var out []*runtime.ContainerEventResponse
	for len(out) < n {
		select {
		case ev := <-l.ch:
			out = append(out, ev)
		case err := <-l.errc:
			t.Fatalf("event stream ended after %d events: %v", len(out), err)
		case <-time.After(20 * time.Second):
			t.Fatalf("timed out after %d events", len(out))
		}
	}
	return out
}

func short(ev *runtime.ContainerEventResponse) string {
	typ := strings.TrimSuffix(strings.TrimPrefix(ev.GetContainerEventType().String(), "CONTAINER_"), "_EVENT")
	return typ + " " + ev.GetContainerId()[:12]
}

// A full lifecycle produces its events in order on two concurrent
// subscribers, each with the pod's status and its containers' statuses; a
// third subscriber that never reads is cut off without slowing anything.
func TestContainerEvents(t *testing.T) {
	d, image := busyboxDaemon(t, "[runtime]\nevent_buffer = 16\n")
	ctx := ctxT(t)
	baseline := churnPods(ctx, t, d, "before", 20) // no subscriber yet
	stuck := openStuckSubscriber(ctx, t, d)
	a, b := subscribe(ctx, t, d), subscribe(ctx, t, d)
	time.Sleep(200 * time.Millisecond) // the streams reach the server before the first event

	pod, ctr := lifecycle(ctx, t, d, image)
	for i, l := range []*eventLog{a, b} {
		checkLifecycleEvents(t, i, l.next(t, 8), pod, ctr)
	}

	// Many pods later, the subscriber that never read has been cut off;
	// every pod was made and removed without waiting for it.
	const pods = 60
	withStuck := churnPods(ctx, t, d, "many", pods)
	t.Logf("pod run+remove: %v each before any subscriber, %v each with one that never reads", baseline, withStuck)
	if withStuck > 3*baseline+50*time.Millisecond {
		t.Errorf("a subscriber that never reads slowed pods from %v to %v each", baseline, withStuck)
	}
	a.next(t, 4*pods) // the reading subscribers kept up
	b.next(t, 4*pods)
	waitFor(t, "the stuck subscriber to be cut off", func() bool { return strings.Contains(d.Logs(), "event subscriber fell behind") })
	var err error
	for err == nil {
		_, err = stuck.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("stuck subscriber's stream ended with %v, want ResourceExhausted", err)
	}
	assertNoPodLeaks(t, d)
	assertNoContainerProcesses(t, d)
}

// openStuckSubscriber subscribes and never reads, on a connection of its
// own with a fixed flow-control window (no BDP growth), so it fills soon.
func openStuckSubscriber(ctx context.Context, t *testing.T, d *daemon) runtime.RuntimeService_GetContainerEventsClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+d.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stuck, err := runtime.NewRuntimeServiceClient(conn).GetContainerEvents(ctx, &runtime.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return stuck
}

// lifecycle runs a pod with a container that exits 7 by itself, then
// removes the container, stops and removes the pod.
func lifecycle(ctx context.Context, t *testing.T, d *daemon, image string) (pod, ctr string) {
	t.Helper()
	podCfg := podSandboxConfig("events")
	podCfg.LogDirectory = filepath.Join(d.dir, "logs")
	p, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Runtime.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: p.PodSandboxId,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "main"}, Image: spec(image),
			Command: []string{"sh", "-c", "sleep 0.5; exit 7"}, LogPath: "main.log"}})
	if err != nil {
		t.Fatal(err)
	}
	pod, ctr = p.PodSandboxId, c.ContainerId
	if _, err := d.Runtime.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: ctr}); err != nil {
		t.Fatal(err)
	}
	// The exit is noticed by the daemon's watch, not asked for.
	waitFor(t, "the container's exit", func() bool {
		st, err := d.Runtime.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: ctr})
		return err == nil && st.Status.State == runtime.ContainerState_CONTAINER_EXITED
	})
	// PodSandboxStatus carries the container statuses with its timestamp.
	ps, err := d.Runtime.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: pod})
	if err != nil || ps.Timestamp == 0 || len(ps.ContainersStatuses) != 1 || ps.ContainersStatuses[0].ExitCode != 7 {
		t.Errorf("PodSandboxStatus = %v, %v", ps, err)
	}
	if _, err := d.Runtime.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: ctr}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Runtime.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	return pod, ctr
}

func checkLifecycleEvents(t *testing.T, sub int, evs []*runtime.ContainerEventResponse, pod, ctr string) {
	t.Helper()
	p, c := pod[:12], ctr[:12]
	want := []string{"CREATED " + p, "STARTED " + p, "CREATED " + c, "STARTED " + c, "STOPPED " + c, "DELETED " + c, "STOPPED " + p, "DELETED " + p}
	var got []string
	for _, ev := range evs {
		got = append(got, short(ev))
		if ev.GetPodSandboxStatus().GetMetadata().GetUid() != "uid-events" || ev.GetCreatedAt() == 0 {
			t.Errorf("subscriber %d: %s without the pod's status or a time", sub, short(ev))
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("subscriber %d got\n%v\nwant\n%v", sub, got, want)
	}
	if st := evs[4].GetContainersStatuses(); len(st) != 1 || st[0].State != runtime.ContainerState_CONTAINER_EXITED || st[0].ExitCode != 7 {
		t.Errorf("STOPPED event's statuses: %v", st)
	}
	if st := evs[6].GetPodSandboxStatus(); st.State != runtime.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod STOPPED event's pod state: %v", st.State)
	}
}

// churnPods runs and removes n host-network pods whose events are 16 KiB
// each, and returns the mean time a pod took.
func churnPods(ctx context.Context, t *testing.T, d *daemon, prefix string, n int) time.Duration {
	t.Helper()
	start := time.Now()
	for i := range n {
		cfg := podSandboxConfig(fmt.Sprintf("%s-%d", prefix, i))
		cfg.Linux.Sysctls = nil
		cfg.Linux.SecurityContext.NamespaceOptions.Network = runtime.NamespaceMode_NODE
		cfg.Annotations = map[string]string{"bulk": strings.Repeat("x", 16<<10)}
		r, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: r.PodSandboxId}); err != nil {
			t.Fatal(err)
		}
	}
	return time.Since(start) / time.Duration(n)
}
