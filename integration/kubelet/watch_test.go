package kubelet

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// watcher polls kubelet's /pods and remembers when each pod first became
// Ready and each container first ran, started and became ready: what shows
// that probes act (a readiness probe that fails first, a startup probe that
// holds a container back).
type watcher struct {
	mu      sync.Mutex
	t0      time.Time
	podRdy  map[string]time.Duration
	running map[string]time.Duration // "pod/container"
	started map[string]time.Duration
	ready   map[string]time.Duration
	last    map[string]*corev1.Pod
	err     error
	stop    chan struct{}
	done    chan struct{}
}

func newWatcher(t0 time.Time) *watcher {
	w := &watcher{t0: t0, podRdy: map[string]time.Duration{}, running: map[string]time.Duration{},
		started: map[string]time.Duration{}, ready: map[string]time.Duration{}, stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w
}

func (w *watcher) loop() {
	defer close(w.done)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		ps, err := pods()
		now := time.Since(w.t0)
		w.mu.Lock()
		w.err = err
		if err == nil {
			w.last = ps
			w.note(ps, now)
		}
		w.mu.Unlock()
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
	}
}

func (w *watcher) note(ps map[string]*corev1.Pod, now time.Duration) {
	first := func(m map[string]time.Duration, k string) {
		if _, ok := m[k]; !ok {
			m[k] = now
		}
	}
	for name, p := range ps {
		if podReady(p) {
			first(w.podRdy, name)
		}
		for _, c := range p.Status.ContainerStatuses {
			k := name + "/" + c.Name
			if c.State.Running != nil {
				first(w.running, k)
			}
			if c.Started != nil && *c.Started {
				first(w.started, k)
			}
			if c.Ready {
				first(w.ready, k)
			}
		}
	}
}

func (w *watcher) close() {
	close(w.stop)
	<-w.done
}

// waitReady waits until every named pod is Ready at once; it returns the
// time since t0.
func (w *watcher) waitReady(names []string, timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for {
		w.mu.Lock()
		var notReady []string
		for _, n := range names {
			if p, ok := w.last[n]; !ok || !podReady(p) {
				notReady = append(notReady, n+" "+describe(p))
			}
		}
		err := w.err
		w.mu.Unlock()
		if len(notReady) == 0 {
			return time.Since(w.t0), nil
		}
		if time.Now().After(deadline) {
			sort.Strings(notReady)
			return 0, fmt.Errorf("not Ready after %s: %s (last /pods error: %v)", timeout, strings.Join(notReady, "; "), err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// describe sums a pod's state up for an error message.
func describe(p *corev1.Pod) string {
	if p == nil {
		return "(absent)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[%s", p.Status.Phase)
	for _, c := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		state := "?"
		switch {
		case c.State.Running != nil:
			state = "running"
		case c.State.Waiting != nil:
			state = "waiting:" + c.State.Waiting.Reason + ":" + c.State.Waiting.Message
		case c.State.Terminated != nil:
			state = fmt.Sprintf("terminated:%s:%d", c.State.Terminated.Reason, c.State.Terminated.ExitCode)
		}
		fmt.Fprintf(&b, " %s=%s ready=%v restarts=%d", c.Name, state, c.Ready, c.RestartCount)
	}
	b.WriteString("]")
	return b.String()
}

// gap returns how long after it first ran a container became started
// (m = started) or ready (m = ready).
func (w *watcher) gap(m map[string]time.Duration, key string) (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, ok1 := w.running[key]
	s, ok2 := m[key]
	return s - r, ok1 && ok2
}

// at is when the watcher first saw key in m, on the wall clock.
func (w *watcher) at(m map[string]time.Duration, key string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, ok := m[key]
	return w.t0.Add(d).Round(0), ok
}

func (w *watcher) podReadyAt(name string) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.podRdy[name]
}
