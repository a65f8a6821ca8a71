package sandbox

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/testutil"
)

// releasingRuntime is the fake runtime of a backend that releases exited
// containers early (ReleaseExited, as nsbox does): a released container is
// unknown to it, as runc's is after `runc delete`, and its rootfs is
// unmounted.
type releasingRuntime struct {
	*fakeRuntime
	released map[string]int // guarded by fakeRuntime.mu
}

func (r *releasingRuntime) ReleaseExited(ctx context.Context, pod *Pod, c *Container) error {
	if err := r.DeleteContainer(ctx, pod, c); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.exited, c.ID)
	delete(r.done, c.ID)
	r.released[c.ID]++
	r.mu.Unlock()
	return mount.UnmountAll(c.Rootfs(), 0)
}

func (e *containerEnv) releasingManager(t *testing.T, rt Backend) *Manager {
	t.Helper()
	m, err := New(Options{
		StateDir: filepath.Join(e.dir, "state"), ContainerDir: filepath.Join(e.dir, "containers"),
		CheckpointDir: filepath.Join(e.dir, "checkpoints"), DefaultHandler: "runc",
		Backends: map[string]Backend{"runc": rt}, Network: e.f, Cgroups: e.f, Images: e.img,
		CgroupRoot: "/cradle-test",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestExitedContainersAreReleasedEarly: once a container's exit is
// recorded (by StopContainer, or by the exit watch), a backend that allows
// it releases the runtime state and the rootfs mount is gone, before
// RemoveContainer; the container keeps its status, across a restart too
// (the runtime no longer knows it), and RemoveContainer still removes it
// whole.
func TestExitedContainersAreReleasedEarly(t *testing.T) {
	e := newContainerEnv(t)
	ctx := context.Background()
	rt := &releasingRuntime{fakeRuntime: e.rt, released: map[string]int{}}
	e.m = e.releasingManager(t, rt)
	pod := e.readyPod(t)
	run := func(name string) Container {
		id, err := e.m.CreateContainer(ctx, pod, containerConfig(name))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.m.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		c, _ := e.m.Container(id)
		if len(testutil.Mounts(t, c.Rootfs())) == 0 {
			t.Fatalf("rootfs of a running container is not mounted")
		}
		return c
	}
	released := func(c Container) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			rt.mu.Lock()
			n := rt.released[c.ID]
			_, held := rt.created[c.ID]
			rt.mu.Unlock()
			if n > 0 && !held {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("container %s not released after its exit", c.ID)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if len(testutil.Mounts(t, c.Rootfs())) > 0 {
			t.Errorf("rootfs of an exited container is still mounted")
		}
	}

	stopped := run("stopped")
	if err := e.m.StopContainer(ctx, stopped.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	rt.mu.Lock()
	if rt.released[stopped.ID] == 0 {
		t.Errorf("StopContainer returned before the runtime state was released")
	}
	rt.mu.Unlock()
	released(stopped)
	exitedItself := run("exits")
	e.rt.exit(exitedItself.ID, ExitStatus{Code: 3, FinishedAt: time.Now()})
	released(exitedItself)

	want := map[string]int32{stopped.ID: 128 + 3 /* SIGQUIT */, exitedItself.ID: 3}
	check := func(when string) {
		t.Helper()
		for id, code := range want {
			c, err := e.m.Container(id)
			if err != nil || c.State != ContainerExited || c.ExitCode != code || c.Message != "" {
				t.Errorf("%s: container %s = %+v, %v; want Exited with code %d", when, id, c, err, code)
			}
		}
	}
	check("after the exits")
	e.rt.detach()
	e.m = e.releasingManager(t, rt) // a restart: the runtime knows neither
	check("after a restart")
	for id := range want {
		if err := e.m.RemoveContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.Container(id); !errdefs.IsNotFound(err) {
			t.Errorf("removed container %s: %v", id, err)
		}
	}
	e.assertNoContainers(t)
}

// racingRuntime lets the exit watch win the race with a stop: the signal
// returns only once the watch has recorded the exit and released the
// container, so the stop's own wait finds a runtime that no longer knows it.
type racingRuntime struct{ *releasingRuntime }

func (r racingRuntime) SignalContainer(ctx context.Context, pod *Pod, c *Container, sig int) error {
	if err := r.releasingRuntime.SignalContainer(ctx, pod, c, sig); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		n := r.released[c.ID]
		r.mu.Unlock()
		if n > 0 {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// TestStopRacingTheExitWatch: a container that dies while StopContainer or
// RemoveContainer waits for it, its exit recorded and its runtime state
// released by the exit watch first, is stopped, not "did not die after
// SIGKILL" (critest's Image Identifier Consistency spec met this).
func TestStopRacingTheExitWatch(t *testing.T) {
	e := newContainerEnv(t)
	ctx := context.Background()
	rel := &releasingRuntime{fakeRuntime: e.rt, released: map[string]int{}}
	m := e.releasingManager(t, racingRuntime{rel})
	e.m = m
	pod := e.readyPod(t)
	for _, stop := range []struct {
		name string
		do   func(id string) error
	}{
		{"StopContainer", func(id string) error { return m.StopContainer(ctx, id, 10*time.Second) }},
		{"StopContainer without grace", func(id string) error { return m.StopContainer(ctx, id, 0) }},
		{"RemoveContainer", func(id string) error { return m.RemoveContainer(ctx, id) }},
	} {
		id, err := m.CreateContainer(ctx, pod, containerConfig("racing"))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := stop.do(id); err != nil {
			t.Errorf("%s: %v", stop.name, err)
		}
		if c, err := m.Container(id); err == nil && c.State != ContainerExited {
			t.Errorf("%s: container %s", stop.name, c.State)
		}
		if err := m.RemoveContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	e.assertNoContainers(t)
}
