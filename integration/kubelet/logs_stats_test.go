package kubelet

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// checkLogRotation: kubelet rotates talker's log at 10 KiB (rename, then
// ReopenContainerLog); the runtime must write on in the new 0.log with no
// line lost, and kubelet must read it back.
func checkLogRotation(t *testing.T, e *env) {
	p := mustPod(t, "logs")
	dirs, _ := filepath.Glob(e.path("pod-logs", fmt.Sprintf("default_logs-%s_%s", nodeName, p.UID), "talker"))
	if len(dirs) != 1 {
		t.Fatalf("no log directory of talker under %s", e.path("pod-logs"))
	}
	dir := dirs[0]
	var last string
	err := waitFor(60*time.Second, time.Second, func() error {
		ents, _ := os.ReadDir(dir)
		var rotated, gz []string
		for _, x := range ents {
			switch {
			case strings.HasSuffix(x.Name(), ".gz"):
				gz = append(gz, x.Name())
			case x.Name() != "0.log" && strings.HasPrefix(x.Name(), "0.log."):
				rotated = append(rotated, x.Name())
			}
		}
		if len(rotated) == 0 || len(gz) == 0 {
			return fmt.Errorf("no rotated and compressed logs yet in %s: %v", dir, names(ents))
		}
		sort.Strings(rotated)
		newest, err1 := os.ReadFile(filepath.Join(dir, rotated[len(rotated)-1]))
		cur, err2 := os.ReadFile(filepath.Join(dir, "0.log"))
		if err1 != nil || err2 != nil {
			return fmt.Errorf("read logs: %v %v", err1, err2)
		}
		a, b := lineNumbers(string(newest)), lineNumbers(string(cur))
		if len(a) == 0 || len(b) == 0 {
			return fmt.Errorf("empty log after rotation: rotated %d lines, 0.log %d lines", len(a), len(b))
		}
		if b[0] != a[len(a)-1]+1 {
			return fmt.Errorf("lines lost at rotation: rotated file ends at %d, 0.log starts at %d", a[len(a)-1], b[0])
		}
		last = fmt.Sprintf("files %v; line %d in %s, line %d first in 0.log", names(ents), a[len(a)-1], rotated[len(rotated)-1], b[0])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("log rotation: %s", last)
	logs, err := kubeLogs("logs", "talker", 3)
	if err != nil || !strings.Contains(logs, "line ") {
		t.Errorf("kubelet reads the rotated log: %q %v", logs, err)
	}
}

func names(ents []os.DirEntry) []string {
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// lineNumbers returns N of every full "line N ..." CRI log line.
func lineNumbers(log string) []int {
	var out []int
	for _, l := range strings.Split(log, "\n") {
		f := strings.Fields(l) // time stream tag "line" N pad
		if len(f) >= 5 && f[2] == "F" && f[3] == "line" {
			if n, err := strconv.Atoi(f[4]); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// checkStats: /stats/summary has CPU, memory, rootfs and logs of every
// container, and network of every pod with a network of its own (cradle's
// stats when kubelet runs with PodAndContainerStatsFromCRI, as here by default).
func checkStats(t *testing.T, pods []string) {
	var problems []string
	err := waitFor(45*time.Second, 3*time.Second, func() error {
		s, err := statsSummary()
		if err != nil {
			return err
		}
		problems = summaryProblems(s, pods)
		if len(problems) > 0 {
			return fmt.Errorf("%d problems", len(problems))
		}
		return nil
	})
	if err != nil {
		t.Errorf("/stats/summary: %v:\n%s", err, strings.Join(problems, "\n"))
	}
}

func summaryProblems(s *summary, pods []string) []string {
	var out []string
	if s.Node.Runtime == nil || s.Node.Runtime.ImageFs == nil || s.Node.Runtime.ImageFs.UsedBytes == nil {
		out = append(out, "node: no image filesystem")
	}
	byName := map[string]podStats{}
	for _, p := range s.Pods {
		byName[strings.TrimSuffix(p.PodRef.Name, "-"+nodeName)] = p
	}
	for _, name := range pods {
		p, ok := byName[name]
		if !ok {
			out = append(out, name+": no stats")
			continue
		}
		if p.CPU == nil || p.CPU.UsageCoreNanoSeconds == nil || p.Memory == nil || p.Memory.WorkingSetBytes == nil {
			out = append(out, name+": no pod CPU or memory")
		}
		// Without PodAndContainerStatsFromCRI kubelet takes pod network stats
		// from cAdvisor, which knows the network namespaces of containerd's
		// and CRI-O's pods only.
		if name != "hostnet" && criStats() && (p.Network == nil || len(p.Network.Interfaces) == 0 || p.Network.Interfaces[0].RxBytes == nil) {
			out = append(out, name+": no pod network")
		}
		if len(p.Containers) == 0 {
			out = append(out, name+": no container stats")
		}
		for _, c := range p.Containers {
			switch {
			case c.CPU == nil || c.CPU.UsageCoreNanoSeconds == nil || *c.CPU.UsageCoreNanoSeconds == 0:
				out = append(out, name+"/"+c.Name+": no CPU usage")
			case c.Memory == nil || c.Memory.WorkingSetBytes == nil || *c.Memory.WorkingSetBytes == 0:
				out = append(out, name+"/"+c.Name+": no memory working set")
			case c.Rootfs == nil || c.Rootfs.UsedBytes == nil:
				out = append(out, name+"/"+c.Name+": no rootfs usage")
			case c.Logs == nil || c.Logs.UsedBytes == nil:
				out = append(out, name+"/"+c.Name+": no log usage")
			}
		}
	}
	return out
}

// checkMetrics: kubelet's own /metrics count the pods and containers it
// runs; /metrics/resource has every pod's CPU and memory; runtime
// operation errors are printed.
func checkMetrics(t *testing.T, pods []string) {
	m, err := metrics("/metrics", "kubelet_running_pods", "kubelet_running_containers", "kubelet_runtime_operations_errors_total", "kubelet_runtime_operations_total")
	if err != nil {
		t.Fatal(err)
	}
	if got := m["kubelet_running_pods"]; int(got) != len(pods) {
		t.Errorf("kubelet_running_pods = %v, want %d", got, len(pods))
	}
	if got := m[`kubelet_running_containers{container_state="running"}`]; got < float64(len(pods)) {
		t.Errorf("kubelet_running_containers{running} = %v, want ≥ %d", got, len(pods))
	}
	var ops, errs float64
	for k, v := range m {
		switch {
		case strings.HasPrefix(k, "kubelet_runtime_operations_total"):
			ops += v
		case strings.HasPrefix(k, "kubelet_runtime_operations_errors_total"):
			errs += v
			t.Logf("runtime operation errors: %s = %v", k, v)
		}
	}
	t.Logf("kubelet runtime operations: %v, errors %v", ops, errs)
	// kubelet v1.34 with PodAndContainerStatsFromCRI reports pods only
	// here (ListPodSandboxStats), containers in /stats/summary.
	r, err := metrics("/metrics/resource", "pod_cpu_usage_seconds_total", "pod_memory_working_set_bytes")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range pods {
		if !anyKeyContains(r, "pod_cpu_usage_seconds_total", `pod="`+name+"-"+nodeName+`"`) ||
			!anyKeyContains(r, "pod_memory_working_set_bytes", `pod="`+name+"-"+nodeName+`"`) {
			t.Errorf("/metrics/resource: no CPU or memory of pod %s", name)
		}
	}
	if t.Failed() {
		raw, err := get(plainClient, readOnly("/metrics/resource"))
		t.Logf("/metrics/resource (%v):\n%.3000s", err, raw)
	}
}

func anyKeyContains(m map[string]float64, prefix, sub string) bool {
	for k := range m {
		if strings.HasPrefix(k, prefix) && strings.Contains(k, sub) {
			return true
		}
	}
	return false
}
