package sandbox

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// flakyWait fails its first waits, as a monitor whose exit file cannot be
// read for a while.
type flakyWait struct {
	*fakeRuntime
	fails atomic.Int32
}

func (f *flakyWait) WaitContainer(ctx context.Context, pod *Pod, c *Container) (ExitStatus, error) {
	if f.fails.Add(-1) >= 0 {
		return ExitStatus{}, errInjected
	}
	return f.fakeRuntime.WaitContainer(ctx, pod, c)
}

func TestFailedWaitsAreStartedAgainAndCounted(t *testing.T) {
	e := newContainerEnv(t)
	flaky := &flakyWait{fakeRuntime: e.rt}
	flaky.fails.Store(2)
	m, err := New(Options{
		StateDir: filepath.Join(e.dir, "state"), ContainerDir: filepath.Join(e.dir, "containers"),
		CheckpointDir: filepath.Join(e.dir, "checkpoints"), DefaultHandler: "runc",
		Backends: map[string]Backend{"runc": flaky}, Network: e.f, Cgroups: e.f, Images: e.img, CgroupRoot: "/cradle-test",
	})
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	pod, c := e.podWithContainer(t)
	ctx := context.Background()
	if err := m.StartContainer(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return m.MonitorRestarts()["wait_failed"] == 2 })
	pods, ctrs := m.StateCounts()
	if pods["Ready"] != 1 || ctrs["Running"] != 1 || ctrs["Exited"] != 0 {
		t.Errorf("state counts: pods %v containers %v", pods, ctrs)
	}
	e.rt.exit(c, ExitStatus{Code: 1, FinishedAt: time.Now()})
	waitState(t, m, c, ContainerExited) // the third wait saw the exit
	if _, ctrs := m.StateCounts(); ctrs["Exited"] != 1 || ctrs["Running"] != 0 {
		t.Errorf("after the exit: %v", ctrs)
	}
	if err := m.RemovePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	e.assertNoContainers(t)
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
