package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// step is an event reduced to what a test compares.
type step struct {
	Type       EventType
	ID         string
	PodState   PodState
	Containers string // "state,state" of the pod's containers after the step
}

func reduce(ev Event) step {
	s := step{Type: ev.Type, ID: ev.ID, PodState: ev.Pod.State}
	for i, c := range ev.Containers {
		if i > 0 {
			s.Containers += ","
		}
		s.Containers += c.State.String()
	}
	return s
}

func collect(t *testing.T, s *Subscription, n int) []step {
	t.Helper()
	var out []step
	for len(out) < n {
		select {
		case ev, ok := <-s.C:
			if !ok {
				t.Fatalf("subscription closed after %v", out)
			}
			out = append(out, reduce(ev))
		case <-time.After(5 * time.Second):
			t.Fatalf("timed out after %v", out)
		}
	}
	return out
}

func TestEventsOfALifecycleInOrder(t *testing.T) {
	e := newContainerEnv(t)
	ctx := context.Background()
	subs := []*Subscription{e.m.SubscribeEvents(), e.m.SubscribeEvents()}
	pod, c := e.podWithContainer(t)
	if err := e.m.StartContainer(ctx, c); err != nil {
		t.Fatal(err)
	}
	e.rt.exit(c, ExitStatus{Code: 3, FinishedAt: time.Now()}) // noticed by the watch
	waitState(t, e.m, c, ContainerExited)
	if err := e.m.RemoveContainer(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := e.m.StopPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if err := e.m.RemovePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	want := []step{
		{EventCreated, pod, PodReady, ""},
		{EventStarted, pod, PodReady, ""},
		{EventCreated, c, PodReady, "Created"},
		{EventStarted, c, PodReady, "Running"},
		{EventStopped, c, PodReady, "Exited"},
		{EventDeleted, c, PodReady, ""},
		{EventStopped, pod, PodNotReady, ""},
		{EventDeleted, pod, PodRemoved, ""},
	}
	for i, s := range subs {
		if diff := cmp.Diff(want, collect(t, s, len(want))); diff != "" {
			t.Errorf("subscriber %d (-want +got):\n%s", i, diff)
		}
		s.Close()
		s.Close() // idempotent
	}
	e.assertNoContainers(t)
}

// podWithContainer runs pod "p" with a created container "c".
func (e *containerEnv) podWithContainer(t *testing.T) (pod, c string) {
	t.Helper()
	ctx := context.Background()
	pcfg := podConfig("p")
	pcfg.LogDirectory = filepath.Join(e.dir, "logs")
	pod, err := e.m.RunPod(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err = e.m.CreateContainer(ctx, pod, containerConfig("c"))
	if err != nil {
		t.Fatal(err)
	}
	return pod, c
}

func waitState(t *testing.T, m *Manager, id string, want ContainerState) {
	t.Helper()
	waitFor(t, func() bool { c, err := m.Container(id); return err == nil && c.State == want })
}

func TestBrokerCutsOffASubscriberThatFallsBehind(t *testing.T) {
	b := newBroker(4, slog.New(slog.DiscardHandler))
	stuck, live := b.subscribe(), b.subscribe()
	done := make(chan int)
	go func() {
		n := 0
		for i := range 1000 {
			b.publish(Event{ID: fmt.Sprint(i)})
			if _, ok := <-live.C; ok { // a reader that keeps up
				n++
			}
		}
		done <- n
	}()
	var n int
	select {
	case n = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("publish blocked on a subscriber that never reads")
	}
	if live.Lagged() || n != 1000 {
		t.Errorf("live subscriber: lagged %v after %d events", live.Lagged(), n)
	}
	if !stuck.Lagged() || b.cut.Load() == 0 {
		t.Errorf("stuck subscriber: lagged %v, cut %d", stuck.Lagged(), b.cut.Load())
	}
	n = 0
	for range stuck.C { // buffered events stay readable, then C is closed
		n++
	}
	if n != 4 {
		t.Errorf("stuck subscriber read %d buffered events, want 4", n)
	}
	live.Close()
	if b.active() {
		t.Error("broker still has subscribers")
	}
}

func TestNoSubscribersNoWork(t *testing.T) {
	f, dir := newFakes(), t.TempDir()
	m := newTestManager(t, f, dir)
	if _, err := m.RunPod(context.Background(), podConfig("p")); err != nil {
		t.Fatal(err)
	}
	s := m.SubscribeEvents()
	s.Close()
	if _, ok := <-s.C; ok {
		t.Error("closed subscription delivered an event")
	}
}

// TestRemovalsOfOnePodAtOnce: a RemovePodSandbox that found the pod while
// another removal held it has nothing left to do once that one is done:
// one Deleted event, not two, and no error.
func TestRemovalsOfOnePodAtOnce(t *testing.T) {
	e := newContainerEnv(t)
	ctx := context.Background()
	pod, err := e.m.RunPod(ctx, podConfig("p"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.StopPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	sub := e.m.SubscribeEvents()
	defer sub.Close()
	deleting, gate := make(chan struct{}), make(chan struct{})
	e.f.mu.Lock()
	e.f.deletingPod, e.f.deletePodGate = deleting, gate
	e.f.mu.Unlock()
	first := make(chan error, 1)
	go func() { first <- e.m.RemovePod(ctx, pod) }()
	<-deleting // the first removal holds the pod
	second := make(chan error, 1)
	go func() { second <- e.m.RemovePod(ctx, pod) }()
	time.Sleep(50 * time.Millisecond) // the second finds the pod and waits for its lock
	close(gate)
	if err := <-first; err != nil {
		t.Fatalf("first RemovePodSandbox: %v", err)
	}
	if err := <-second; err != nil {
		t.Fatalf("second RemovePodSandbox: %v", err)
	}
	got := collect(t, sub, 1)
	select {
	case ev := <-sub.C:
		t.Errorf("events %v, then %v: want one Deleted", got, reduce(ev))
	case <-time.After(200 * time.Millisecond):
	}
}
