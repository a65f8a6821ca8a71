package kubelet

import (
	"os"
	"sort"
	"testing"
	"time"
)

// TestKubelet: a real kubelet runs static pods on cradle. The steps build
// on each other and run in order.
func TestKubelet(t *testing.T) {
	e := newEnv(t)
	t.Cleanup(e.teardown)
	all := staticPods(e.path("hostdata"))
	var names []string
	for name, p := range all {
		e.writeManifest(t, p)
		names = append(names, name)
	}
	sort.Strings(names)
	e.startCradle()
	t.Logf("cradle %s, kubelet %s, dir %s", e.crBin, e.kubeBin, e.dir)
	// A pod made directly over the CRI with no log path, as crictl makes
	// them: kubelet kills it as an orphan and garbage-collects it.
	orphan := e.makeOrphan(t)

	start := time.Now()
	e.startKubelet()
	w := newWatcher(start)
	defer w.close()
	if _, err := w.waitReady(steadyPods, 4*time.Minute); err != nil {
		t.Fatalf("kubelet start → steady pods Ready: %v\nkubelet log:\n%s", err, e.kubelet.tail(40))
	}
	steady := slowest(w, steadyPods)
	allReady, err := w.waitReady(names, 4*time.Minute)
	if err != nil {
		t.Fatalf("kubelet start → all static pods Ready: %v", err)
	}
	t.Logf("TIMING kubelet start → %d steady pods Ready: %.1fs; → all %d static pods Ready (with the back-off of the failing ones): %.1fs",
		len(steadyPods), steady.Seconds(), len(names), allReady.Seconds())

	t.Run("InitContainers", func(t *testing.T) { checkInit(t) })
	t.Run("Probes", func(t *testing.T) { checkProbes(t, w) })
	t.Run("Restarts", func(t *testing.T) { checkRestarts(t) })
	t.Run("Volumes", func(t *testing.T) { checkVolumes(t, e) })
	t.Run("QoS", func(t *testing.T) { checkQoS(t, e) })
	t.Run("ShareProcessNamespace", func(t *testing.T) { checkSharePID(t) })
	t.Run("HostNetworkAndHostPort", func(t *testing.T) { checkHostNet(t) })
	t.Run("LogRotation", func(t *testing.T) { checkLogRotation(t, e) })
	t.Run("Stats", func(t *testing.T) { checkStats(t, names) })
	t.Run("Metrics", func(t *testing.T) { checkMetrics(t, names) })
	t.Run("OrphanLogPath", func(t *testing.T) { checkOrphan(t, e, orphan) })
	t.Run("GracefulRemoval", func(t *testing.T) { checkGracefulRemoval(t, e) })
	t.Run("Kill9Cradle", func(t *testing.T) { checkKill9(t, e) })
	t.Run("InStepAfterRestart", func(t *testing.T) { checkInStep(t, e, w) })
	if _, err := os.Stat(e.path("cwd", "canary")); err != nil {
		t.Errorf("kubelet's working directory lost its canary file: %v", err)
	}
}

// steadyPods have no deliberate failure: their Ready time is kubelet and
// cradle's own speed.
var steadyPods = []string{"probes", "volumes", "qos-guaranteed", "qos-burstable", "qos-besteffort", "sharepid", "hostnet", "logs", "graceful"}

func slowest(w *watcher, names []string) time.Duration {
	var m time.Duration
	for _, n := range names {
		m = max(m, w.podReadyAt(n))
	}
	return m
}
