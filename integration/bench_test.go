package integration

import (
	"fmt"
	"sort"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// BenchmarkPodSandbox measures RunPodSandbox and StopPodSandbox +
// RemovePodSandbox over the socket (pod files, cgroup, pinned namespaces,
// built-in network with a veth and an address, /dev/shm), and reports p50
// and p95 of each.
func BenchmarkPodSandbox(b *testing.B) {
	d := newDaemon(b, "")
	ctx := b.Context()
	var run, remove []time.Duration
	for i := 0; i < b.N; i++ {
		cfg := podSandboxConfig(fmt.Sprintf("bench-%d", i))
		cfg.Linux.Sysctls = nil
		start := time.Now()
		resp, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		if err != nil {
			b.Fatal(err)
		}
		run = append(run, time.Since(start))
		start = time.Now()
		if _, err := d.Runtime.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: resp.PodSandboxId}); err != nil {
			b.Fatal(err)
		}
		if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: resp.PodSandboxId}); err != nil {
			b.Fatal(err)
		}
		remove = append(remove, time.Since(start))
	}
	b.ReportMetric(percentile(run, 50), "run-p50-ms")
	b.ReportMetric(percentile(run, 95), "run-p95-ms")
	b.ReportMetric(percentile(remove, 50), "stop+remove-p50-ms")
	b.ReportMetric(percentile(remove, 95), "stop+remove-p95-ms")
}

func percentile(ds []time.Duration, p int) float64 {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return float64(s[i].Microseconds()) / 1000
}
