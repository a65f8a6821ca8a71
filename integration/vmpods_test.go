package integration

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/sandbox/vmbox"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// requireVM skips (fails under CRADLE_TEST_STRICT) where microVM pods
// cannot run.
func requireVM(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "qemu-system-x86_64")
	testutil.RequireBinary(t, "conmon")
	testutil.RequireBinary(t, "crun")
	if _, err := os.Stat("/usr/lib/qemu/virtiofsd"); err != nil {
		testutil.Unmet(t, "needs /usr/lib/qemu/virtiofsd (apt-get install qemu-system-common)")
	}
	if _, err := vmbox.DefaultKernel(vmbox.KernelRoots...); err != nil {
		testutil.Unmet(t, "needs a guest kernel (make deps-vm): "+err.Error())
	}
}

// newVMDaemon starts a daemon whose default handler is vm (runc is there
// too) in a short directory: a VM's sockets live in its pod's directory,
// and unix socket paths are limited to 107 bytes. The daemon has pulled
// busybox; its reference is returned.
func newVMDaemon(t testing.TB) (*daemon, string) {
	t.Helper()
	requireVM(t)
	reg := fixtures.StartRegistry(t)
	ref := reg.Ref("busybox:1")
	reg.Push(t, ref, fixtures.Busybox(t))
	dir, err := os.MkdirTemp("", "cvm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := newDaemonIn(t, dir, "[runtime]\ndefault_handler = \"vm\"\n"+vmHandler)
	if _, err := d.Images.PullImage(ctxT(t), &runtime.PullImageRequest{Image: spec(ref)}); err != nil {
		t.Fatal(err)
	}
	waitVMTemplate(t, d)
	t.Cleanup(func() {
		assertNoPodLeaks(t, d)
		assertNoContainerProcesses(t, d)
		assertNoVMs(t, dir)
	})
	return d, ref
}

// TestVMPods runs the container features of the integration suite in
// microVM pods: lifecycle, stop signals and timeouts, OOM, exec, logs and
// rotation, streaming (exec, attach, tty, port-forward), stats, networking
// with namespace pods, and isolation from the host.
func TestVMPods(t *testing.T) {
	d, image := newVMDaemon(t)
	t.Run("exits, logs and exec", func(t *testing.T) { testExitsLogsAndExec(t, d, image, "vm") })
	t.Run("streaming", func(t *testing.T) { testStreaming(t, d, image, 10) })
	t.Run("stats", func(t *testing.T) { testVMStats(t, d, image) })
	t.Run("network", func(t *testing.T) { testVMNetwork(t, d, image) })
	t.Run("isolation", func(t *testing.T) { testVMIsolation(t, d, image) })
	t.Run("templates", func(t *testing.T) { testVMTemplates(t, d, image) })
}

// testVMStats: a container's CPU and memory are read from its cgroup in the
// guest, the pod's from its host cgroup (QEMU and virtiofsd).
func testVMStats(t *testing.T, d *daemon, image string) {
	k := newPodKit(t, d, image, "vm", podSandboxConfig("vmstats"))
	// Half a vCPU: the VM has one, which the hog and execs need too.
	burner := k.run("burner", &runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{
		Resources: &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000}}}, "sh", "-c", "while :; do :; done")
	// A 32 MiB string, held (a shell's $(...) of that size takes minutes under TCG).
	hog := k.run("hog", nil, "awk", `BEGIN { s = "x"; for (i = 0; i < 25; i++) s = s s; system("touch /ready"); while (1) system("sleep 1000") }`)
	waitWithin(t, 90*time.Second, "the hog to hold its memory", func() bool {
		r, err := d.Runtime.ExecSync(k.ctx, &runtime.ExecSyncRequest{ContainerId: hog, Cmd: []string{"test", "-e", "/ready"}, Timeout: 20})
		return err == nil && r.ExitCode == 0
	})
	first, err := d.Runtime.ContainerStats(k.ctx, &runtime.ContainerStatsRequest{ContainerId: burner})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	second, err := d.Runtime.ContainerStats(k.ctx, &runtime.ContainerStatsRequest{ContainerId: burner})
	if err != nil {
		t.Fatal(err)
	}
	if u1, u2 := first.Stats.Cpu.GetUsageCoreNanoSeconds().GetValue(), second.Stats.Cpu.GetUsageCoreNanoSeconds().GetValue(); u2 <= u1 {
		t.Errorf("guest CPU usage did not rise: %d then %d", u1, u2)
	}
	if rate := second.Stats.Cpu.GetUsageNanoCores().GetValue(); rate == 0 {
		t.Error("usage_nano_cores = 0 for a busy loop")
	}
	hs, err := d.Runtime.ContainerStats(k.ctx, &runtime.ContainerStatsRequest{ContainerId: hog})
	if err != nil {
		t.Fatal(err)
	}
	if ws := hs.Stats.Memory.GetWorkingSetBytes().GetValue(); ws < 32<<20 {
		t.Errorf("hog's working set %d bytes, holds 32 MiB", ws)
	}
	if hs.Stats.WritableLayer.GetUsedBytes() == nil {
		t.Error("no writable layer figures")
	}
	ps, err := d.Runtime.PodSandboxStats(k.ctx, &runtime.PodSandboxStatsRequest{PodSandboxId: k.pod})
	if err != nil {
		t.Fatal(err)
	}
	// The pod's memory is the VM's on the host: at least what the guest uses.
	if m := ps.Stats.Linux.GetMemory().GetWorkingSetBytes().GetValue(); m < 32<<20 {
		t.Errorf("pod working set %d bytes", m)
	}
	if n := len(ps.Stats.Linux.GetContainers()); n != 2 {
		t.Errorf("pod stats list %d containers, want 2", n)
	}
	if ps.Stats.Linux.GetNetwork().GetDefaultInterface().GetName() != "eth0" {
		t.Errorf("pod network stats: %v", ps.Stats.Linux.GetNetwork())
	}
	// Limits are applied in the guest, within the VM's size.
	if _, err := d.Runtime.UpdateContainerResources(k.ctx, &runtime.UpdateContainerResourcesRequest{ContainerId: burner,
		Linux: &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, MemoryLimitInBytes: 64 << 20}}); err != nil {
		t.Fatal(err)
	}
	if out, code := k.exec(burner, "sh", "-c", "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max 2>&1; grep cgroup /proc/mounts"); !strings.HasPrefix(out, "67108864\n50000 100000") {
		t.Errorf("limits in the guest: %q (exit %d)", out, code)
	}
	_, err = d.Runtime.UpdateContainerResources(k.ctx, &runtime.UpdateContainerResourcesRequest{ContainerId: burner,
		Linux: &runtime.LinuxContainerResources{MemoryLimitInBytes: 64 << 30}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("a limit beyond the VM: %v, want InvalidArgument", err)
	}
}

// testVMNetwork: a VM pod and a namespace pod reach each other by pod IP,
// and a hostPort reaches the VM pod from the host.
func testVMNetwork(t *testing.T, d *daemon, image string) {
	vmCfg := podSandboxConfig("vmnet")
	vmCfg.PortMappings = []*runtime.PortMapping{{Protocol: runtime.Protocol_TCP, ContainerPort: 7000, HostPort: 18097}}
	vm := newPodKit(t, d, image, "vm", vmCfg)
	ns := newPodKit(t, d, image, "runc", podSandboxConfig("nsnet"))
	httpd := "mkdir -p /www && echo from-$0 > /www/index.html && exec httpd -f -p 7000 -h /www"
	vmSrv := vm.run("web", nil, "sh", "-c", httpd, "vm")
	nsSrv := ns.run("web", nil, "sh", "-c", httpd, "ns")
	vmIP, nsIP := podIP(t, d, vm.pod), podIP(t, d, ns.pod)
	get := func(k *podKit, from, url string) string {
		var out string
		waitFor(t, "GET "+url+" from "+from, func() bool {
			r, err := d.Runtime.ExecSync(k.ctx, &runtime.ExecSyncRequest{ContainerId: from, Cmd: []string{"wget", "-qO-", url}, Timeout: 20})
			out = strings.TrimSpace(string(r.GetStdout()))
			return err == nil && r.ExitCode == 0
		})
		return out
	}
	if got := get(ns, nsSrv, "http://"+vmIP+":7000/"); got != "from-vm" {
		t.Errorf("namespace pod → VM pod: %q", got)
	}
	if got := get(vm, vmSrv, "http://"+nsIP+":7000/"); got != "from-ns" {
		t.Errorf("VM pod → namespace pod: %q", got)
	}
	if out, _ := vm.exec(vmSrv, "ip", "-o", "-4", "addr", "show", "eth0"); !strings.Contains(out, vmIP+"/") {
		t.Errorf("guest eth0: %q, want %s", out, vmIP)
	}
	// The hostPort, from the host to the bridge's address.
	var body []byte
	waitFor(t, "the hostPort", func() bool {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + net.JoinHostPort("10.231.0.1", "18097") + "/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == 200
	})
	if strings.TrimSpace(string(body)) != "from-vm" {
		t.Errorf("hostPort → VM pod: %q", body)
	}
}

// testVMIsolation: a VM pod's container runs on the guest kernel and sees
// neither the host's processes nor its mounts.
func testVMIsolation(t *testing.T, d *daemon, image string) {
	k := newPodKit(t, d, image, "vm", podSandboxConfig("vmiso"))
	c := k.run("probe", nil, "sleep", "1000")
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	host := unix.ByteSliceToString(u.Version[:]) + " " + unix.ByteSliceToString(u.Release[:])
	guest, _ := k.exec(c, "sh", "-c", "echo $(uname -v) $(uname -r)")
	if guest == "" || guest == host {
		t.Errorf("container's kernel %q, the host's %q: want another kernel", guest, host)
	}
	ps, _ := k.exec(c, "ps", "-o", "comm")
	for _, hostProc := range []string{"cradle", "qemu", "conmon", "virtiofsd"} {
		if strings.Contains(ps, hostProc) {
			t.Errorf("the container sees the host's %s:\n%s", hostProc, ps)
		}
	}
	mounts, _ := k.exec(c, "cat", "/proc/mounts")
	if strings.Contains(mounts, d.dir) || strings.Contains(mounts, "/var/lib") {
		t.Errorf("the container sees host mounts:\n%s", mounts)
	}
	if n := strings.Count(mounts, "\n"); n > 40 {
		t.Errorf("%d mounts in the container", n)
	}
	// The guest's clock is the host's (a microvm has no RTC): log entries
	// and exit times, stamped in the guest, are now.
	stamp := k.run("stamp", nil, "echo", "hi")
	st := k.waitExited(stamp)
	if d := time.Since(time.Unix(0, st.FinishedAt)); d < 0 || d > 10*time.Minute {
		t.Errorf("finished at %v, %v ago", time.Unix(0, st.FinishedAt), d)
	}
	b, err := os.ReadFile(filepath.Join(k.podCfg.LogDirectory, "stamp.log"))
	if err != nil {
		t.Fatal(err)
	}
	at, err := time.Parse(time.RFC3339Nano, strings.Fields(string(b))[0])
	if d := time.Since(at); err != nil || d < -time.Minute || d > 10*time.Minute {
		t.Errorf("log entry stamped %v (%v), %v ago", at, err, d)
	}
}

func podIP(t *testing.T, d *daemon, id string) string {
	t.Helper()
	st, err := d.Runtime.PodSandboxStatus(ctxT(t), &runtime.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		t.Fatal(err)
	}
	return st.Status.GetNetwork().GetIp()
}

// waitVMTemplate waits until the daemon has built its VM template (it
// starts at start-up), when templates are on (the daemon made the
// templates directory): tests that count processes and files then see no
// build in flight.
func waitVMTemplate(t testing.TB, d *daemon) {
	t.Helper()
	dir := filepath.Join(d.Root, "vm", "templates")
	if _, err := os.Stat(dir); err != nil {
		return // off
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		built, _ := filepath.Glob(filepath.Join(dir, "*", "*", "template.json"))
		building, _ := filepath.Glob(filepath.Join(dir, "*", "*.new"))
		if len(built) > 0 && len(building) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no VM template in %s after 3 minutes:\n%s", dir, d.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
