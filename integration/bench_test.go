package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
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

// BenchmarkPodStart measures a whole pod start over the socket with a warm
// image: RunPodSandbox + CreateContainer + StartContainer, for each OCI
// handler, 50 pods one after another and 20 at once. With the 20 pods of
// the concurrent round running it reports the per-pod memory overhead: the
// PSS of the processes cradle adds per pod (the conmon monitor; an infra
// process only for pods that share their PID namespace, which these, like
// kubelet's default pods, do not).
func BenchmarkPodStart(b *testing.B) {
	d, image := startFeatureDaemon(b)
	for _, h := range handlers {
		b.Run(h+"/sequential-50", func(b *testing.B) { benchPodStarts(b, d, image, h, 50, 1) })
		b.Run(h+"/concurrent-20", func(b *testing.B) { benchPodStarts(b, d, image, h, 20, 20) })
	}
}

func benchPodStarts(b *testing.B, d *daemon, image, handler string, pods, parallel int) {
	benchPodStartsWith(b, d, image, handler, pods, parallel, func() float64 { return monitorPSSKiB(b, d) })
}

// benchPodStartsWith starts pods pods, parallel at a time, b.N times, and
// reports start percentiles and, in a concurrent round, pss()/pod.
func benchPodStartsWith(b *testing.B, d *daemon, image, handler string, pods, parallel int, pss func() float64) {
	ctx := b.Context()
	var all []time.Duration
	for i := 0; i < b.N; i++ {
		var (
			mu  sync.Mutex
			ids []string
			wg  sync.WaitGroup
			sem = make(chan struct{}, parallel)
		)
		for p := range pods {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				took, id, err := startOnePod(ctx, d, image, handler, fmt.Sprintf("b%d-%d", i, p))
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					b.Error(err)
					return
				}
				all, ids = append(all, took), append(ids, id)
			}()
		}
		wg.Wait()
		b.StopTimer()
		if parallel > 1 && i == 0 {
			b.ReportMetric(pss()/float64(len(ids)), "pss-KiB/pod")
		}
		for _, id := range ids {
			if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
	if b.Failed() {
		return
	}
	b.ReportMetric(percentile(all, 50), "start-p50-ms")
	b.ReportMetric(percentile(all, 95), "start-p95-ms")
}

// startOnePod runs a kubelet-like pod with one container and returns how
// long it took until StartContainer returned.
func startOnePod(ctx context.Context, d *daemon, image, handler, name string) (time.Duration, string, error) {
	cfg := podSandboxConfig(name)
	cfg.Linux.Sysctls = nil
	start := time.Now()
	pod, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	if err != nil {
		return 0, "", err
	}
	ctr, err := d.Runtime.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: cfg,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "main"}, Image: spec(image), Command: []string{"sleep", "1000"},
			Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
				NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}}}}})
	if err != nil {
		return 0, pod.PodSandboxId, err
	}
	if _, err := d.Runtime.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		return 0, pod.PodSandboxId, err
	}
	return time.Since(start), pod.PodSandboxId, nil
}

// monitorPSSKiB sums the PSS of the processes cradle runs beside the
// containers (conmon monitors and infra processes) under this daemon.
func monitorPSSKiB(b *testing.B, d *daemon) float64 {
	return pssKiB(func(c string) bool {
		monitor := strings.HasPrefix(c, "/usr/bin/conmon\x00") && strings.Contains(c, d.dir)
		infra := strings.Contains(c, d.dir+"/run/pause\x00") || strings.Contains(c, "cradle\x00pause")
		return monitor || infra
	})
}

// pssKiB sums the PSS of the processes whose command line (NUL-separated)
// match selects.
func pssKiB(match func(cmdline string) bool) float64 {
	entries, _ := os.ReadDir("/proc")
	total := 0.0
	for _, e := range entries {
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !match(string(cmd)) {
			continue
		}
		rollup, err := os.ReadFile(filepath.Join("/proc", e.Name(), "smaps_rollup"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(rollup), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
				kib, _ := strconv.ParseFloat(f[1], 64)
				total += kib
			}
		}
	}
	return total
}

// BenchmarkVMPodStart measures microVM pods (TCG here, unless the host's
// KVM boots them): RunPodSandbox + CreateContainer + StartContainer, 5 one
// after another and 10 at once, and with the 10 running the host memory
// each costs: the PSS of its QEMU, its virtiofsd and the container's
// monitor (there is none on the host: the agent in the guest is QEMU's
// memory).
func BenchmarkVMPodStart(b *testing.B) {
	d, image := newVMDaemon(b)
	b.Run("sequential-5", func(b *testing.B) { benchVMPods(b, d, image, 5, 1) })
	b.Run("concurrent-10", func(b *testing.B) { benchVMPods(b, d, image, 10, 10) })
}

func benchVMPods(b *testing.B, d *daemon, image string, pods, parallel int) {
	benchPodStartsWith(b, d, image, "vm", pods, parallel, func() float64 {
		return pssKiB(func(c string) bool {
			return strings.Contains(c, d.dir) && (strings.Contains(c, "qemu-system") || strings.Contains(c, "virtiofsd"))
		})
	})
}
