package integration

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/vishvananda/netlink"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func podSandboxConfig(name string) *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{
		Metadata:  &runtime.PodSandboxMetadata{Name: name, Namespace: "test", Uid: "uid-" + name, Attempt: 1},
		Hostname:  name + "-host",
		Labels:    map[string]string{"app": name},
		DnsConfig: &runtime.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"test.svc.cluster.local"}},
		Linux: &runtime.LinuxPodSandboxConfig{
			SecurityContext: &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}},
			Sysctls:         map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"},
		},
	}
}

// assertNoPodLeaks checks what pods hold on the host: pinned namespaces
// and mounts under the daemon's directory, veths, pod cgroups.
func assertNoPodLeaks(t testing.TB, d *daemon) {
	t.Helper()
	testutil.AssertNoMounts(t, d.dir)
	for _, dir := range []string{filepath.Join(d.dir, "run", "netns"), filepath.Join(d.dir, "run", "pods")} {
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Errorf("%s holds %d entries", dir, len(entries))
		}
	}
	// Only the daemon's own bridge: another instance's pods (a kubelet's
	// cradle beside the tests) have veths on theirs.
	links, _ := netlink.LinkList()
	br, err := netlink.LinkByName(d.Bridge)
	for _, l := range links {
		if l.Type() == "veth" && err == nil && l.Attrs().MasterIndex == br.Attrs().Index {
			t.Errorf("veth %s left on the host", l.Attrs().Name)
		}
	}
	// Only those made since this daemon first started: a test that leaks
	// fails itself, not every test after it.
	var left []string
	for _, cg := range podCgroups() {
		if !d.cgroups[cg] {
			procs, _ := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
			left = append(left, fmt.Sprintf("%s (processes: %q)", cg, strings.Fields(string(procs))))
		}
	}
	if len(left) > 0 {
		t.Errorf("pod cgroups left: %v", left)
	}
}

// podCgroups lists the pod cgroups cradle made under its default root, in
// every hierarchy.
func podCgroups() []string {
	m, _ := filepath.Glob("/sys/fs/cgroup/*/cradle/pod-*")
	m2, _ := filepath.Glob("/sys/fs/cgroup/cradle/pod-*") // cgroup v2
	return append(m, m2...)
}

func TestPodSandboxLifecycle(t *testing.T) {
	d := newDaemon(t, "")
	ctx := ctxT(t)
	subnet := netip.MustParsePrefix(testSubnet)
	var ids []string
	for _, name := range []string{"web", "db"} {
		resp, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podSandboxConfig(name)})
		if err != nil {
			t.Fatalf("RunPodSandbox %s: %v", name, err)
		}
		ids = append(ids, resp.PodSandboxId)
	}
	ips := map[string]bool{}
	for _, id := range ids {
		st, err := d.Runtime.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
		if err != nil {
			t.Fatal(err)
		}
		ip, err := netip.ParseAddr(st.Status.GetNetwork().GetIp())
		if err != nil || !subnet.Contains(ip) || ips[ip.String()] {
			t.Errorf("pod %s has IP %q: want a distinct address in %s", id, st.Status.GetNetwork().GetIp(), subnet)
		}
		ips[ip.String()] = true
		if st.Status.State != runtime.PodSandboxState_SANDBOX_READY || st.Status.CreatedAt == 0 || st.Info["info"] == "" || st.Timestamp == 0 {
			t.Errorf("status = %+v", st)
		}
	}
	// Pod files: resolv.conf from the DNS config.
	resolv, err := os.ReadFile(filepath.Join(d.dir, "run", "pods", ids[0], "resolv.conf"))
	if err != nil || !strings.Contains(string(resolv), "nameserver 10.96.0.10") {
		t.Errorf("resolv.conf = %q, %v", resolv, err)
	}

	bad := []struct {
		name string
		req  *runtime.RunPodSandboxRequest
		code codes.Code
	}{
		{"duplicate name", &runtime.RunPodSandboxRequest{Config: podSandboxConfig("web")}, codes.AlreadyExists},
		{"unknown handler", &runtime.RunPodSandboxRequest{Config: podSandboxConfig("x"), RuntimeHandler: "kata"}, codes.InvalidArgument},
		{"no metadata", &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{}}, codes.InvalidArgument},
		{"host sysctl", &runtime.RunPodSandboxRequest{Config: withSysctl(podSandboxConfig("y"), "kernel.panic", "1")}, codes.InvalidArgument},
	}
	for _, tt := range bad {
		if _, err := d.Runtime.RunPodSandbox(ctx, tt.req); status.Code(err) != tt.code {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.code)
		}
	}

	if _, err := d.Runtime.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: ids[0]}); err != nil {
		t.Fatal(err)
	}
	list, err := d.Runtime.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{
		State: &runtime.PodSandboxStateValue{State: runtime.PodSandboxState_SANDBOX_READY}}})
	if err != nil || len(list.Items) != 1 || list.Items[0].Id != ids[1] {
		t.Errorf("ready pods = %v, %v", list, err)
	}
	list, _ = d.Runtime.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{LabelSelector: map[string]string{"app": "web"}}})
	if len(list.GetItems()) != 1 || list.Items[0].State != runtime.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("by label = %v", list)
	}

	// kill -9: pods survive the daemon, and are found again.
	d.Kill9()
	d.Start()
	list, err = d.Runtime.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil || len(list.Items) != 2 {
		t.Fatalf("after kill -9 and restart: %v, %v", list, err)
	}
	for _, id := range append(ids, ids[0]) {
		if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Errorf("remove %s: %v", id, err)
		}
	}
	if _, err := d.Runtime.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: ids[0]}); err != nil {
		t.Errorf("stop of a removed pod: %v", err)
	}
	if _, err := d.Runtime.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: ids[0]}); status.Code(err) != codes.NotFound {
		t.Errorf("status of a removed pod: %v, want NotFound", err)
	}
	assertNoPodLeaks(t, d)
}

func withSysctl(c *runtime.PodSandboxConfig, k, v string) *runtime.PodSandboxConfig {
	c.Linux.Sysctls = map[string]string{k: v}
	return c
}
