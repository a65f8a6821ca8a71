package kubelet

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
)

func mustPod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	ps, err := pods()
	if err != nil {
		t.Fatal(err)
	}
	p, ok := ps[name]
	if !ok {
		t.Fatalf("kubelet has no pod %s", name)
	}
	return p
}

func checkInit(t *testing.T) {
	p := mustPod(t, "probes")
	for _, n := range []string{"init1", "init2"} {
		c := containerStatus(p, n)
		if c == nil || c.State.Terminated == nil || c.State.Terminated.ExitCode != 0 {
			t.Errorf("init container %s did not complete: %s", n, describe(p))
		}
	}
	logs, err := kubeLogs("probes", "side", 10)
	if err != nil || !strings.Contains(logs, "one\ntwo") {
		t.Errorf("side does not see what both init containers wrote, in order: %q %v", logs, err)
	}
}

func checkProbes(t *testing.T, w *watcher) {
	// exec readiness: side writes /tmp/ready 3 s after it starts.
	probedAfter(t, w, w.ready, "probes", "side", "/tmp/ready", "exec readiness probe: side Ready")
	// tcpSocket startup probe: late listens 4 s after it starts.
	probedAfter(t, w, w.started, "liveness", "late", "/tmp/listening", "tcpSocket startup probe: late Started")
	p := mustPod(t, "probes")
	if c := containerStatus(p, "web"); c == nil || !c.Ready || c.Started == nil || !*c.Started || c.RestartCount != 0 {
		t.Errorf("httpGet startup/readiness, tcpSocket liveness: web %s", describe(p))
	}
	// exec liveness: lively removes /tmp/alive once and is restarted.
	err := waitFor(60*time.Second, time.Second, func() error {
		p := mustPod(t, "liveness")
		c := containerStatus(p, "lively")
		if c == nil || c.RestartCount != 1 || c.LastTerminationState.Terminated == nil || !c.Ready {
			return fmt.Errorf("want lively restarted once by its liveness probe and ready: %s", describe(p))
		}
		t.Logf("exec liveness probe: lively restarted %d time, last exit %d (%s)", c.RestartCount,
			c.LastTerminationState.Terminated.ExitCode, c.LastTerminationState.Terminated.Reason)
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// probedAfter checks that kubelet reported a container Ready or Started (m)
// no sooner than its probe could succeed: when the container wrote the time
// (in seconds, so no later than that moment) to file. The watcher sees a
// status some time after kubelet set it, so the check never fails a correct
// runtime, whereas the gap between Running and Ready that kubelet reports
// shrinks when its Running shows late (as it can on a loaded machine).
func probedAfter(t *testing.T, w *watcher, m map[string]time.Duration, pod, ctr, file, what string) {
	t.Helper()
	at, ok := w.at(m, pod+"/"+ctr)
	if !ok {
		t.Errorf("%s: never seen", what)
		return
	}
	out, err := kubeRun(pod, ctr, "cat", file)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Errorf("%s: %s holds %q", what, file, out)
		return
	}
	could := time.Unix(sec, 0)
	if at.Before(could) {
		t.Errorf("%s at %s, before its probe could succeed (%s, when it wrote %s)", what,
			at.Format(time.RFC3339Nano), could.Format(time.RFC3339), file)
		return
	}
	gap, _ := w.gap(m, pod+"/"+ctr)
	t.Logf("%s %.1fs after kubelet reported it running, %.1fs after the second in which it wrote %s",
		what, gap.Seconds(), at.Sub(could).Seconds(), file)
}

func checkRestarts(t *testing.T) {
	for _, name := range []string{"restart-always", "restart-onfailure"} {
		p := mustPod(t, name)
		c := containerStatus(p, "flaky")
		if c == nil || c.RestartCount != 2 || c.LastTerminationState.Terminated == nil || c.LastTerminationState.Terminated.ExitCode != 3 {
			t.Errorf("%s: want 2 restarts after exit code 3: %s", name, describe(p))
			continue
		}
		out, err := kubeRun(name, "flaky", "cat", "/data/starts")
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var ts []int
		for _, f := range strings.Fields(out) {
			n, _ := strconv.Atoi(f)
			ts = append(ts, n)
		}
		if len(ts) != 3 {
			t.Errorf("%s: want 3 starts, got %q", name, out)
			continue
		}
		// kubelet's back-off: the second restart waits about 10 s, then 20 s.
		t.Logf("%s: restarts=%d, gaps between starts %ds and %ds", name, c.RestartCount, ts[1]-ts[0], ts[2]-ts[1])
		if ts[2]-ts[1] < 8 {
			t.Errorf("%s: no crash-loop back-off between the 2nd and 3rd start (%ds)", name, ts[2]-ts[1])
		}
	}
}

func checkVolumes(t *testing.T, e *env) {
	p := mustPod(t, "volumes")
	if c := containerStatus(p, "reader"); c == nil || !c.Ready {
		t.Fatalf("reader does not see what writer wrote: %s", describe(p))
	}
	mounts, err := kubeRun("volumes", "reader", "cat", "/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	fsOf := func(mp string) string {
		for _, l := range strings.Split(mounts, "\n") {
			if f := strings.Fields(l); len(f) > 2 && f[1] == mp {
				return f[2]
			}
		}
		return ""
	}
	if fsOf("/mem") != "tmpfs" || fsOf("/scratch") == "tmpfs" || fsOf("/scratch") == "" {
		t.Errorf("emptyDir media: /mem on %q (want tmpfs), /scratch on %q (want disk)", fsOf("/mem"), fsOf("/scratch"))
	}
	if b, err := os.ReadFile(e.path("hostdata", "c")); err != nil || string(b) != "host\n" {
		t.Errorf("hostPath: host sees %q, %v", b, err)
	}
}

func checkQoS(t *testing.T, e *env) {
	for _, c := range []struct {
		pod   string
		class corev1.PodQOSClass
		dir   string // below kubepods
		limit string // the container's memory limit
		quota string // its CFS quota
	}{
		{"qos-guaranteed", corev1.PodQOSGuaranteed, "", "67108864", "10000"},
		{"qos-burstable", corev1.PodQOSBurstable, "burstable", "134217728", "-1"},
		{"qos-besteffort", corev1.PodQOSBestEffort, "besteffort", "9223372036854771712", "-1"},
	} {
		p := mustPod(t, c.pod)
		if p.Status.QOSClass != c.class {
			t.Errorf("%s: QoS class %s, want %s", c.pod, p.Status.QOSClass, c.class)
		}
		cs := containerStatus(p, "app")
		if cs == nil || cs.ContainerID == "" {
			t.Errorf("%s: no container: %s", c.pod, describe(p))
			continue
		}
		_, id, _ := strings.Cut(cs.ContainerID, "://")
		podDir := filepath.Join(cgroupRoot, "kubepods", c.dir, "pod"+string(p.UID))
		checkCgroupFile(t, c.pod, "memory", podDir, id, "memory.limit_in_bytes", c.limit)
		checkCgroupFile(t, c.pod, "cpu", podDir, id, "cpu.cfs_quota_us", c.quota)
	}
}

// checkCgroupFile reads file in the cgroup of container id below podDir
// (cgroup v1 hierarchy ctrl) and compares it with want.
func checkCgroupFile(t *testing.T, pod, ctrl, podDir, id, file, want string) {
	t.Helper()
	base := filepath.Join("/sys/fs/cgroup", ctrl, podDir)
	if _, err := os.Stat(base); err != nil {
		t.Errorf("%s: pod cgroup %s: %v", pod, base, err)
		return
	}
	var found string
	_ = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.Contains(d.Name(), id) {
			found = p
		}
		return nil
	})
	if found == "" {
		t.Errorf("%s: no cgroup of container %s below %s", pod, id, base)
		return
	}
	b, err := os.ReadFile(filepath.Join(found, file))
	if got := strings.TrimSpace(string(b)); err != nil || got != want {
		t.Errorf("%s: %s of the container is %q (%v), want %s", pod, file, got, err, want)
	}
}

func checkSharePID(t *testing.T) {
	out, err := kubeRun("sharepid", "b", "ps", "-o", "pid,args")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "sleep 100001") || !strings.Contains(out, "sleep 100002") {
		t.Errorf("container b does not see container a's process:\n%s", out)
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "1" && strings.HasPrefix(f[1], "sleep") {
			t.Errorf("a container's process is PID 1 of the shared namespace:\n%s", out)
		}
	}
}

func httpOK(u string) error {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}

func checkHostNet(t *testing.T) {
	nodeIP := defaultRouteIP(t)
	p := mustPod(t, "hostnet")
	// A standalone kubelet has no Node object: it reports no host IP, so no
	// pod IP for a hostNetwork pod either.
	if p.Status.PodIP != p.Status.HostIP {
		t.Errorf("hostNetwork pod IP %q, host IP %q", p.Status.PodIP, p.Status.HostIP)
	}
	if err := httpOK(fmt.Sprintf("http://%s:%d/", nodeIP, hostNetPort)); err != nil {
		t.Errorf("hostNetwork web server: %v", err)
	}
	web := mustPod(t, "probes")
	if ip := net.ParseIP(web.Status.PodIP); ip == nil || !subnetNet().Contains(ip) {
		t.Errorf("pod network: pod IP %q is not in %s", web.Status.PodIP, subnet)
	}
	for _, host := range []string{nodeIP.String(), "127.0.0.1"} {
		if err := httpOK(fmt.Sprintf("http://%s:%d/", host, hostPortWeb)); err != nil {
			t.Errorf("hostPort %d on %s: %v", hostPortWeb, host, err)
		} else {
			t.Logf("hostPort %d answers on %s", hostPortWeb, host)
		}
	}
}

func subnetNet() *net.IPNet {
	_, n, _ := net.ParseCIDR(subnet)
	return n
}

// defaultRouteIP is the first IPv4 address of the default route's link:
// the node's address.
func defaultRouteIP(t *testing.T) net.IP {
	t.Helper()
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() != "0.0.0.0/0" {
			continue
		}
		l, err := netlink.LinkByIndex(r.LinkIndex)
		if err != nil {
			continue
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		if len(addrs) > 0 {
			return addrs[0].IP
		}
	}
	t.Fatal("no default route with an IPv4 address")
	return nil
}
