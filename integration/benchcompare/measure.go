package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The RPCs timed, in table order; "whole pod" is RunPodSandbox +
// CreateContainer + StartContainer of one pod.
var rpcs = []string{"RunPodSandbox", "CreateContainer", "StartContainer", "Create+Start", "whole pod",
	"StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"}

// figures are one round's numbers of one runtime, by row name.
type figures map[string]float64

// recorder collects durations by RPC.
type recorder struct {
	mu sync.Mutex
	d  map[string][]time.Duration
}

func (r *recorder) add(rpc string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.d == nil {
		r.d = map[string][]time.Duration{}
	}
	r.d[rpc] = append(r.d[rpc], d)
}

// timed runs f and records how long it took under rpc.
func (r *recorder) timed(rpc string, f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	took := time.Since(start)
	if err != nil {
		return took, fmt.Errorf("%s: %w", rpc, err)
	}
	r.add(rpc, took)
	return took, nil
}

// measure runs one round for one runtime on fresh daemon state.
func measure(ctx context.Context, o options, reg *registry, name string, round int) (figures, error) {
	dir := filepath.Join(o.work, fmt.Sprintf("%s-%d", name, round))
	d, err := startDaemon(ctx, o, reg, name, dir)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	f := figures{}
	for _, ref := range []string{busyboxRef, pauseRef} {
		if _, err := d.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}}); err != nil {
			return nil, fmt.Errorf("pull %s: %w", ref, err)
		}
	}
	// A warm-up pod, not counted: the first pod's one-time costs (the
	// bridge, containerd's first shim) are not what is compared.
	var warm recorder
	if err := podsLifecycle(ctx, d, &warm, dir, "warm", 1, 1, nil); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	settle()
	f["daemon RSS idle (MiB)"] = rssMiB(d.cmd.Process.Pid)
	if o.idleHook != "" {
		hook := exec.CommandContext(ctx, "sh", "-c", o.idleHook)
		hook.Env = append(os.Environ(), fmt.Sprintf("PID=%d", d.cmd.Process.Pid), "RUNTIME="+name)
		hook.Stdout, hook.Stderr = os.Stderr, os.Stderr
		if err := hook.Run(); err != nil {
			return nil, fmt.Errorf("idle hook: %w", err)
		}
	}
	var seq, conc recorder
	up := func() {
		settle()
		pids := d.podProc()
		f["host PSS per pod (MiB)"] = pssKiB(pids) / 1024 / float64(o.pods)
		f["processes per pod"] = float64(len(pids)) / float64(o.pods)
		f[fmt.Sprintf("daemon RSS, %d pods (MiB)", o.pods)] = rssMiB(d.cmd.Process.Pid)
	}
	if err := podsLifecycle(ctx, d, &seq, dir, "seq", o.pods, 1, up); err != nil {
		return nil, fmt.Errorf("one after another: %w", err)
	}
	if err := podsLifecycle(ctx, d, &conc, dir, "conc", o.pods, o.parallel, nil); err != nil {
		return nil, fmt.Errorf("%d concurrent: %w", o.parallel, err)
	}
	settle()
	f["daemon RSS after (MiB)"] = rssMiB(d.cmd.Process.Pid)
	for _, phase := range []struct {
		name string
		r    *recorder
	}{{"seq", &seq}, {fmt.Sprintf("%d conc", o.parallel), &conc}} {
		for _, rpc := range rpcs {
			f[fmt.Sprintf("%s %s p50", phase.name, rpc)] = percentile(phase.r.d[rpc], 50)
			f[fmt.Sprintf("%s %s p90", phase.name, rpc)] = percentile(phase.r.d[rpc], 90)
		}
	}
	return f, nil
}

// settle lets the daemons' background work (GC, exit watches) finish
// before memory is read.
func settle() { time.Sleep(2 * time.Second) }

type podRef struct{ pod, ctr string }

// podsLifecycle starts n pods, parallel at a time, calls up (if not nil)
// with all of them running, then stops and removes them, parallel at a
// time, recording each RPC.
func podsLifecycle(ctx context.Context, d *daemon, rec *recorder, dir, prefix string, n, parallel int, up func()) error {
	pods := make([]podRef, n)
	if err := fan(n, parallel, func(i int) error {
		p, err := startPod(ctx, d, rec, dir, fmt.Sprintf("%s-%d", prefix, i))
		pods[i] = p
		return err
	}); err != nil {
		return err
	}
	if up != nil {
		up()
	}
	return fan(n, parallel, func(i int) error { return removePod(ctx, d, rec, pods[i]) })
}

// fan runs f(0..n-1), parallel at a time, and returns the first error.
func fan(n, parallel int, f func(int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, parallel)
	)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

// startPod runs a kubelet-like pod with one container: a shell that exits
// on SIGTERM (so StopContainer is a graceful stop, not the kill timeout).
func startPod(ctx context.Context, d *daemon, rec *recorder, dir, name string) (podRef, error) {
	var ref podRef
	logDir := filepath.Join(dir, "pod-logs", name)
	if err := os.MkdirAll(logDir, 0o755); err != nil { // kubelet makes it
		return ref, err
	}
	cfg := &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: name, Namespace: "bench", Uid: "uid-" + name, Attempt: 0},
		Hostname:     name,
		LogDirectory: logDir,
		Labels:       map[string]string{"app": "bench"},
		DnsConfig:    &runtime.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"bench.svc.cluster.local"}},
		Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}}},
	}
	var run, create, start time.Duration
	var err error
	if run, err = rec.timed("RunPodSandbox", func() error {
		resp, err := d.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		if err == nil {
			ref.pod = resp.PodSandboxId
		}
		return err
	}); err != nil {
		return ref, err
	}
	if create, err = rec.timed("CreateContainer", func() error {
		resp, err := d.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: ref.pod, SandboxConfig: cfg,
			Config: &runtime.ContainerConfig{
				Metadata: &runtime.ContainerMetadata{Name: "main"},
				Image:    &runtime.ImageSpec{Image: busyboxRef},
				Command:  []string{"sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"},
				LogPath:  "main/0.log",
				Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
					NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}}},
			}})
		if err == nil {
			ref.ctr = resp.ContainerId
		}
		return err
	}); err != nil {
		return ref, err
	}
	if start, err = rec.timed("StartContainer", func() error {
		_, err := d.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: ref.ctr})
		return err
	}); err != nil {
		return ref, err
	}
	rec.add("Create+Start", create+start)
	rec.add("whole pod", run+create+start)
	return ref, nil
}

// removePod stops and removes a pod as kubelet does: the container with a
// grace period, then the sandbox.
func removePod(ctx context.Context, d *daemon, rec *recorder, p podRef) error {
	steps := []struct {
		rpc string
		f   func() error
	}{
		{"StopContainer", func() error {
			_, err := d.rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: p.ctr, Timeout: 10})
			return err
		}},
		{"RemoveContainer", func() error {
			_, err := d.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: p.ctr})
			return err
		}},
		{"StopPodSandbox", func() error {
			_, err := d.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p.pod})
			return err
		}},
		{"RemovePodSandbox", func() error {
			_, err := d.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.pod})
			return err
		}},
	}
	for _, s := range steps {
		if _, err := rec.timed(s.rpc, s.f); err != nil {
			return err
		}
	}
	return nil
}

// percentile is the p-th percentile of ds in milliseconds (nearest rank).
func percentile(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return float64(s[i].Microseconds()) / 1000
}

// proc is what findProcs knows of a process.
type proc struct {
	pid, ppid          int
	comm, cmdline, exe string
}

// findProcs lists the processes match selects.
func findProcs(match func(proc) bool) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		base := filepath.Join("/proc", e.Name())
		stat, err := os.ReadFile(filepath.Join(base, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(stat)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		fields := strings.Fields(s[closing+1:])
		if len(fields) < 2 {
			continue
		}
		p := proc{pid: pid, comm: s[open+1 : closing]}
		p.ppid, _ = strconv.Atoi(fields[1])
		cmd, _ := os.ReadFile(filepath.Join(base, "cmdline"))
		p.cmdline = string(cmd)
		p.exe, _ = os.Readlink(filepath.Join(base, "exe"))
		if match(p) {
			out = append(out, pid)
		}
	}
	return out
}

// pssKiB sums the Pss of smaps_rollup over pids.
func pssKiB(pids []int) float64 {
	total := 0.0
	for _, pid := range pids {
		total += statusField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
	}
	return total
}

// rssMiB is a process's VmRSS.
func rssMiB(pid int) float64 {
	return statusField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:") / 1024
}

// statusField reads a "Key: N kB" line.
func statusField(path, key string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == key {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	log.Printf("%s: no %s", path, key)
	return 0
}
