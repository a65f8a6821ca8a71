package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/network"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// statsPods is two pods: "work" runs a CPU burner and a container holding
// 64 MiB that wrote 2 MiB into its writable layer; "peer" is idle.
type statsPods struct {
	d                  *daemon
	work, peer         string // pod IDs
	workIP             string
	burner, hog        string // container IDs
	burnerCg, hogCg    string // their cgroup paths
	workNetNS, peerNet string
}

func startStatsPods(ctx context.Context, t *testing.T, d *daemon, image string) *statsPods {
	t.Helper()
	s := &statsPods{d: d}
	run := func(name string) (string, string) {
		cfg := podSandboxConfig(name)
		cfg.LogDirectory = filepath.Join(d.dir, "logs", name)
		r, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		st, err := d.Runtime.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: r.PodSandboxId})
		if err != nil {
			t.Fatal(err)
		}
		return r.PodSandboxId, st.Status.GetNetwork().GetIp()
	}
	s.work, s.workIP = run("work")
	s.peer, _ = run("peer")
	s.workNetNS = filepath.Join(d.dir, "run", "netns", s.work)
	s.peerNet = filepath.Join(d.dir, "run", "netns", s.peer)
	s.burner, s.burnerCg = startContainer(ctx, t, d, s.work, "burner", image, "while :; do :; done")
	// The shell keeps x alive (sleep is not its last command, so it is not exec'd).
	s.hog, s.hogCg = startContainer(ctx, t, d, s.work, "hog", image,
		`dd if=/dev/zero of=/written bs=1024 count=2048; x=$(head -c 67108864 /dev/zero | tr '\0' a); touch /ready; sleep 1000 & wait; echo ${#x}`)
	return s
}

// busyboxDaemon starts a daemon (extra appended to its config) that has
// pulled busybox:1 from a fixture registry, and returns the image's
// reference.
func busyboxDaemon(t testing.TB, extra string) (*daemon, string) {
	t.Helper()
	testutil.RequireBinary(t, "conmon")
	reg := fixtures.StartRegistry(t)
	ref := reg.Ref("busybox:1")
	reg.Push(t, ref, fixtures.Busybox(t))
	d := newDaemon(t, extra)
	if _, err := d.Images.PullImage(ctxT(t), &runtime.PullImageRequest{Image: spec(ref)}); err != nil {
		t.Fatal(err)
	}
	return d, ref
}

// startContainer runs sh -c script and returns its ID and cgroup path.
func startContainer(ctx context.Context, t testing.TB, d *daemon, pod, name, image, script string) (string, string) {
	t.Helper()
	r, err := d.Runtime.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: name}, Image: spec(image),
			Labels: map[string]string{"role": name}, Command: []string{"sh", "-c", script}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Runtime.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
		t.Fatal(err)
	}
	st, err := d.Runtime.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: r.ContainerId, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct{ CgroupPath string }
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.CgroupPath == "" {
		t.Fatalf("no cgroup path in %q: %v", st.Info["info"], err)
	}
	return r.ContainerId, info.CgroupPath
}

// BenchmarkListStats measures ListContainerStats and ListPodSandboxStats
// with 4 pods of 5 running containers each (cgroup files, writable layers
// walked, netlink in each pod's namespace), and reports p50 and p95.
func BenchmarkListStats(b *testing.B) {
	d, image := busyboxDaemon(b, "")
	ctx := b.Context()
	const pods, perPod = 4, 5
	var ids []string
	for i := range pods {
		r, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podSandboxConfig(fmt.Sprintf("bench-%d", i))})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, r.PodSandboxId)
		for j := range perPod {
			startContainer(ctx, b, d, r.PodSandboxId, fmt.Sprintf("c%d", j), image, "sleep 1000")
		}
	}
	var list, podList []time.Duration
	for b.Loop() {
		start := time.Now()
		r, err := d.Runtime.ListContainerStats(ctx, &runtime.ListContainerStatsRequest{})
		if err != nil || len(r.Stats) != pods*perPod {
			b.Fatalf("%d stats, %v", len(r.GetStats()), err)
		}
		list = append(list, time.Since(start))
		start = time.Now()
		if _, err := d.Runtime.ListPodSandboxStats(ctx, &runtime.ListPodSandboxStatsRequest{}); err != nil {
			b.Fatal(err)
		}
		podList = append(podList, time.Since(start))
	}
	b.ReportMetric(percentile(list, 50), "ListContainerStats-p50-ms")
	b.ReportMetric(percentile(list, 95), "ListContainerStats-p95-ms")
	b.ReportMetric(percentile(podList, 50), "ListPodSandboxStats-p50-ms")
	b.ReportMetric(percentile(podList, 95), "ListPodSandboxStats-p95-ms")
	for _, id := range ids {
		if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			b.Fatal(err)
		}
	}
}

// cgroupFile reads one number from a cgroup v1 controller file, or a key of
// a flat-keyed file.
func cgroupFile(t *testing.T, controller, cg, file, key string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, cg, file))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, found := strings.Cut(line, " ")
		if !found && key == "" {
			n, _ := strconv.ParseUint(line, 10, 64)
			return n
		}
		if k == key {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	t.Fatalf("%s: no %q", file, key)
	return 0
}

// procNetDev reads an interface's rx and tx bytes from /proc inside a netns.
func procNetDev(t *testing.T, nsPath, ifname string) (rx, tx uint64) {
	t.Helper()
	err := network.WithNetNS(nsPath, func() error {
		f, err := os.Open("/proc/thread-self/net/dev")
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			name, rest, ok := strings.Cut(sc.Text(), ":")
			if !ok || strings.TrimSpace(name) != ifname {
				continue
			}
			fields := strings.Fields(rest)
			rx, _ = strconv.ParseUint(fields[0], 10, 64)
			tx, _ = strconv.ParseUint(fields[8], 10, 64)
			return nil
		}
		return fmt.Errorf("no %s in /proc/net/dev", ifname)
	})
	if err != nil {
		t.Fatal(err)
	}
	return rx, tx
}

// sendBytes sends n bytes from one pod to the echo server in another and
// reads them back.
func sendBytes(t *testing.T, fromNS, addr string, n int) {
	t.Helper()
	var c net.Conn
	if err := network.WithNetNS(fromNS, func() (err error) { c, err = net.DialTimeout("tcp", addr, 3*time.Second); return err }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() { _, _ = c.Write(make([]byte, n)) }()
	if _, err := io.CopyN(io.Discard, c, int64(n)); err != nil {
		t.Fatal(err)
	}
}

func TestContainerAndPodStats(t *testing.T) {
	d, image := busyboxDaemon(t, "")
	ctx := ctxT(t)
	s := startStatsPods(ctx, t, d, image)
	waitFor(t, "the hog to hold its memory", func() bool {
		r, err := d.Runtime.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: s.hog, Cmd: []string{"test", "-e", "/ready"}, Timeout: 5})
		return err == nil && r.ExitCode == 0
	})

	t.Run("cpu", func(t *testing.T) { checkCPU(ctx, t, s) })
	t.Run("memory and writable layer", func(t *testing.T) { checkMemory(ctx, t, s) })
	t.Run("network", func(t *testing.T) { checkNetwork(ctx, t, s) })
	t.Run("filters", func(t *testing.T) { checkFilters(ctx, t, s) })
	t.Run("metrics", func(t *testing.T) { checkPodMetrics(ctx, t, s) })
	t.Run("critest metrics", func(t *testing.T) { checkCritestMetrics(ctx, t, s) })
	t.Run("streams", func(t *testing.T) { checkStreams(ctx, t, s) })
	t.Run("pod resize", func(t *testing.T) { checkPodResize(ctx, t, s) })

	for _, id := range []string{s.work, s.peer} {
		if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatal(err)
		}
	}
	assertNoPodLeaks(t, d)
	assertNoContainerProcesses(t, d)
}

// A container burning CPU shows rising usage, a rate near one core, and
// the figure of its cpuacct.usage.
func checkCPU(ctx context.Context, t *testing.T, s *statsPods) {
	d := s.d
	first, err := d.Runtime.ContainerStats(ctx, &runtime.ContainerStatsRequest{ContainerId: s.burner})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	second, err := d.Runtime.ContainerStats(ctx, &runtime.ContainerStatsRequest{ContainerId: s.burner})
	if err != nil {
		t.Fatal(err)
	}
	file := cgroupFile(t, "cpuacct", s.burnerCg, "cpuacct.usage", "")
	u1, u2 := first.Stats.Cpu.UsageCoreNanoSeconds.GetValue(), second.Stats.Cpu.UsageCoreNanoSeconds.GetValue()
	if u2 <= u1 {
		t.Errorf("CPU usage did not rise: %d then %d", u1, u2)
	}
	if file < u2 || file-u2 > uint64(time.Second) {
		t.Errorf("reported %d ns, cpuacct.usage read just after says %d", u2, file)
	}
	// Two cores are shared with other work: the burner gets at least a
	// fifth of one.
	if rate := second.Stats.Cpu.GetUsageNanoCores().GetValue(); rate < 2e8 || rate > 2.2e9 {
		t.Errorf("usage_nano_cores = %d", rate)
	}
	t.Logf("burner: %d ns CPU, %d nanocores", u2, second.Stats.Cpu.GetUsageNanoCores().GetValue())
	// PSI: from the cgroup2 tree (beside the v1 controllers on a hybrid
	// host), where the kernel keeps it.
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/unified", s.burnerCg, "cpu.pressure")); err == nil {
		some, _, _ := strings.Cut(string(b), "\n")
		_, total, _ := strings.Cut(some, "total=")
		us, _ := strconv.ParseUint(total, 10, 64)
		psi := second.Stats.Cpu.GetPsi().GetSome()
		if psi == nil || psi.Total > us*1000 {
			t.Errorf("cpu PSI some = %v; cpu.pressure read after says total=%d us", psi, us)
		}
		t.Logf("burner: cpu PSI some total %d ns, avg10 %.2f", psi.GetTotal(), psi.GetAvg10())
	}
}

// A container holding 64 MiB shows it in its working set, as its memory
// cgroup's files say; 2 MiB written show in its writable layer.
func checkMemory(ctx context.Context, t *testing.T, s *statsPods) {
	st, err := s.d.Runtime.ContainerStats(ctx, &runtime.ContainerStatsRequest{ContainerId: s.hog})
	if err != nil {
		t.Fatal(err)
	}
	mem := st.Stats.Memory
	usage := cgroupFile(t, "memory", s.hogCg, "memory.usage_in_bytes", "")
	inactive := cgroupFile(t, "memory", s.hogCg, "memory.stat", "total_inactive_file")
	rss := cgroupFile(t, "memory", s.hogCg, "memory.stat", "total_rss")
	ws := mem.WorkingSetBytes.GetValue()
	if ws < 64<<20 {
		t.Errorf("working set %d < 64 MiB", ws)
	}
	if diff := int64(ws) - int64(usage-inactive); diff > 4<<20 || diff < -4<<20 {
		t.Errorf("working set %d, files say usage %d - inactive_file %d = %d", ws, usage, inactive, usage-inactive)
	}
	if r := mem.RssBytes.GetValue(); r < 64<<20 || int64(r)-int64(rss) > 4<<20 || int64(rss)-int64(r) > 4<<20 {
		t.Errorf("rss %d, memory.stat total_rss %d", r, rss)
	}
	if mem.PageFaults.GetValue() == 0 || mem.UsageBytes.GetValue() < ws {
		t.Errorf("memory = %v", mem)
	}
	if st.Stats.Swap == nil {
		t.Error("no swap figures")
	}
	wl := st.Stats.WritableLayer
	if wl.GetUsedBytes().GetValue() < 2<<20 || wl.GetInodesUsed().GetValue() == 0 || wl.GetFsId().GetMountpoint() == "" {
		t.Errorf("writable layer = %v", wl)
	}
	t.Logf("hog: working set %d, rss %d, writable layer %d bytes / %d inodes", ws, mem.RssBytes.GetValue(),
		wl.GetUsedBytes().GetValue(), wl.GetInodesUsed().GetValue())
}

// Traffic between two pods shows in their rx/tx, as /proc/net/dev in each
// pod's namespace says.
func checkNetwork(ctx context.Context, t *testing.T, s *statsPods) {
	stop := echoServerIn(t, s.workNetNS, ":7100")
	defer stop()
	before := podStats(ctx, t, s.d, s.work).Linux.Network.DefaultInterface
	const n = 4 << 20
	sendBytes(t, s.peerNet, net.JoinHostPort(s.workIP, "7100"), n)
	work, peer := podStats(ctx, t, s.d, s.work), podStats(ctx, t, s.d, s.peer)
	wi, pi := work.Linux.Network.DefaultInterface, peer.Linux.Network.DefaultInterface
	if wi.Name != "eth0" || wi.RxBytes.GetValue()-before.RxBytes.GetValue() < n || wi.TxBytes.GetValue()-before.TxBytes.GetValue() < n {
		t.Errorf("work pod's eth0 before %v after %v: want %d more each way", before, wi, n)
	}
	if pi.TxBytes.GetValue() < n || pi.RxBytes.GetValue() < n {
		t.Errorf("peer pod's eth0 = %v", pi)
	}
	for _, c := range []struct {
		ns  string
		got *runtime.NetworkInterfaceUsage
	}{{s.workNetNS, wi}, {s.peerNet, pi}} {
		rx, tx := procNetDev(t, c.ns, "eth0")
		if rx < c.got.RxBytes.GetValue() || rx-c.got.RxBytes.GetValue() > 64<<10 || tx < c.got.TxBytes.GetValue() || tx-c.got.TxBytes.GetValue() > 64<<10 {
			t.Errorf("reported rx %d tx %d; /proc/net/dev says rx %d tx %d", c.got.RxBytes.GetValue(), c.got.TxBytes.GetValue(), rx, tx)
		}
	}
	if pc := work.Linux.Process.GetProcessCount().GetValue(); pc < 2 {
		t.Errorf("work pod process count %d", pc)
	}
	if cpu := work.Linux.Cpu.GetUsageCoreNanoSeconds().GetValue(); cpu == 0 || work.Linux.Memory.GetWorkingSetBytes().GetValue() < 64<<20 {
		t.Errorf("pod cpu %d, memory %v", cpu, work.Linux.Memory)
	}
	if len(work.Linux.Containers) != 2 || len(peer.Linux.Containers) != 0 {
		t.Errorf("per-container stats: work %d, peer %d", len(work.Linux.Containers), len(peer.Linux.Containers))
	}
}

func podStats(ctx context.Context, t *testing.T, d *daemon, id string) *runtime.PodSandboxStats {
	t.Helper()
	r, err := d.Runtime.PodSandboxStats(ctx, &runtime.PodSandboxStatsRequest{PodSandboxId: id})
	if err != nil {
		t.Fatal(err)
	}
	return r.Stats
}

func checkFilters(ctx context.Context, t *testing.T, s *statsPods) {
	d := s.d
	count := func(f *runtime.ContainerStatsFilter) int {
		r, err := d.Runtime.ListContainerStats(ctx, &runtime.ListContainerStatsRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		return len(r.Stats)
	}
	for name, c := range map[string]struct {
		f    *runtime.ContainerStatsFilter
		want int
	}{
		"all":       {nil, 2},
		"by pod":    {&runtime.ContainerStatsFilter{PodSandboxId: s.peer}, 0},
		"by id":     {&runtime.ContainerStatsFilter{Id: s.hog}, 1},
		"by label":  {&runtime.ContainerStatsFilter{LabelSelector: map[string]string{"role": "burner"}}, 1},
		"no match":  {&runtime.ContainerStatsFilter{LabelSelector: map[string]string{"role": "none"}}, 0},
		"pod+label": {&runtime.ContainerStatsFilter{PodSandboxId: s.work, LabelSelector: map[string]string{"role": "hog"}}, 1},
	} {
		if got := count(c.f); got != c.want {
			t.Errorf("%s: %d container stats, want %d", name, got, c.want)
		}
	}
	r, err := d.Runtime.ListPodSandboxStats(ctx, &runtime.ListPodSandboxStatsRequest{Filter: &runtime.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "peer"}}})
	if err != nil || len(r.Stats) != 1 || r.Stats[0].Attributes.Id != s.peer {
		t.Errorf("pod stats by label: %v, %v", r, err)
	}
	r, err = d.Runtime.ListPodSandboxStats(ctx, &runtime.ListPodSandboxStatsRequest{})
	if err != nil || len(r.Stats) != 2 {
		t.Errorf("all pod stats: %d, %v", len(r.GetStats()), err)
	}
}

func checkPodMetrics(ctx context.Context, t *testing.T, s *statsPods) {
	desc, err := s.d.Runtime.ListMetricDescriptors(ctx, &runtime.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]int{}
	for _, m := range desc.Descriptors {
		labels[m.Name] = len(m.LabelKeys)
	}
	r, err := s.d.Runtime.ListPodSandboxMetrics(ctx, &runtime.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]uint64{}
	for _, pm := range r.PodMetrics {
		all := pm.Metrics
		for _, cm := range pm.ContainerMetrics {
			all = append(all, cm.Metrics...)
		}
		for _, m := range all {
			if n, ok := labels[m.Name]; !ok || n != len(m.LabelValues) {
				t.Errorf("%s not described as sent (%d labels)", m.Name, len(m.LabelValues))
			}
			if pm.PodSandboxId == s.work {
				seen[m.Name] += m.Value.GetValue()
			}
		}
	}
	for _, name := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
		"container_network_receive_bytes_total", "container_network_transmit_packets_total", "container_fs_usage_bytes"} {
		if seen[name] == 0 {
			t.Errorf("work pod's %s is zero or missing", name)
		}
	}
}

func checkStreams(ctx context.Context, t *testing.T, s *statsPods) {
	d := s.d
	count := func(name string, recv func() (int, error)) int {
		total := 0
		for {
			n, err := recv()
			if errors.Is(err, io.EOF) {
				return total
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			total += n
		}
	}
	ps, err := d.Runtime.StreamPodSandboxes(ctx, &runtime.StreamPodSandboxesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := d.Runtime.StreamContainers(ctx, &runtime.StreamContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: s.work}})
	if err != nil {
		t.Fatal(err)
	}
	css, err := d.Runtime.StreamContainerStats(ctx, &runtime.StreamContainerStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pss, err := d.Runtime.StreamPodSandboxStats(ctx, &runtime.StreamPodSandboxStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pms, err := d.Runtime.StreamPodSandboxMetrics(ctx, &runtime.StreamPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	is, err := d.Images.StreamImages(ctx, &runtime.StreamImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := []int{
		count("pods", func() (int, error) { r, err := ps.Recv(); return len(r.GetPodSandboxes()), err }),
		count("containers", func() (int, error) { r, err := cs.Recv(); return len(r.GetContainers()), err }),
		count("container stats", func() (int, error) { r, err := css.Recv(); return len(r.GetContainerStats()), err }),
		count("pod stats", func() (int, error) { r, err := pss.Recv(); return len(r.GetPodSandboxStats()), err }),
		count("pod metrics", func() (int, error) { r, err := pms.Recv(); return len(r.GetPodSandboxMetrics()), err }),
		count("images", func() (int, error) { r, err := is.Recv(); return len(r.GetImages()), err }),
	}
	if fmt.Sprint(got) != fmt.Sprint([]int{2, 2, 2, 2, 2, 1}) {
		t.Errorf("streamed pods, containers, container stats, pod stats, pod metrics, images = %v", got)
	}
}

// checkPodResize resizes the work pod in place (UpdatePodSandboxResources):
// its cgroup takes the new limits and PodSandboxStats reports them.
func checkPodResize(ctx context.Context, t *testing.T, s *statsPods) {
	podCg := "cradle/pod-" + s.work[:12]
	for _, limit := range []int64{768 << 20, 512 << 20} {
		res := &runtime.LinuxContainerResources{MemoryLimitInBytes: limit, CpuPeriod: 100000, CpuQuota: limit >> 12, CpuShares: 1024}
		if _, err := s.d.Runtime.UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: s.work, Resources: res}); err != nil {
			t.Fatal(err)
		}
		if got := cgroupFile(t, "memory", podCg, "memory.limit_in_bytes", ""); got != uint64(limit) {
			t.Errorf("pod memory.limit_in_bytes = %d, want %d", got, limit)
		}
		if got := cgroupFile(t, "cpu", podCg, "cpu.cfs_quota_us", ""); got != uint64(limit>>12) {
			t.Errorf("pod cpu.cfs_quota_us = %d, want %d", got, limit>>12)
		}
		st, err := s.d.Runtime.PodSandboxStats(ctx, &runtime.PodSandboxStatsRequest{PodSandboxId: s.work})
		if err != nil {
			t.Fatal(err)
		}
		mem := st.GetStats().GetLinux().GetMemory()
		avail, ws := mem.GetAvailableBytes().GetValue(), mem.GetWorkingSetBytes().GetValue()
		// The two are read a moment apart: allow the working set to move.
		if avail == 0 || avail > uint64(limit) || (avail+ws) < uint64(limit)-(4<<20) || (avail+ws) > uint64(limit)+(4<<20) {
			t.Errorf("pod stats after resize to %d: available %d + working set %d", limit, avail, ws)
		}
	}
	if _, err := s.d.Runtime.UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: "nope", Resources: &runtime.LinuxContainerResources{}}); status.Code(err) != codes.NotFound {
		t.Errorf("resize of an unknown pod: %v, want NotFound", err)
	}
	if _, err := s.d.Runtime.UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: s.work}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("resize without resources: %v, want InvalidArgument", err)
	}
}
