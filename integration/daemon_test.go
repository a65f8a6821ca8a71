package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/vishvananda/netlink"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestVersionStatusRuntimeConfig(t *testing.T) {
	d := newDaemon(t, "")
	ctx := ctxT(t)
	v, err := d.Runtime.Version(ctx, &runtime.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "cradle" || v.RuntimeApiVersion != "v1" || v.Version != "0.1.0" || v.RuntimeVersion == "" {
		t.Errorf("version = %+v", v)
	}

	st, err := d.Runtime.Status(ctx, &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	conds := map[string]*runtime.RuntimeCondition{}
	for _, c := range st.Status.Conditions {
		conds[c.Type] = c
	}
	if c := conds[runtime.RuntimeReady]; c == nil || !c.Status {
		t.Errorf("RuntimeReady = %+v: runc and conmon are installed", c)
	}
	if c := conds[runtime.NetworkReady]; c == nil || !c.Status {
		t.Errorf("NetworkReady = %+v: the built-in network is up", c)
	}
	// Take the bridge away: the network is no longer ready, and says why.
	if l, err := netlink.LinkByName(testBridge); err != nil || netlink.LinkDel(l) != nil {
		t.Fatalf("remove the bridge: %v", err)
	}
	st2, err := d.Runtime.Status(ctx, &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st2.Status.Conditions {
		if c.Type == runtime.NetworkReady && (c.Status || c.Reason == "" || !strings.Contains(c.Message, testBridge)) {
			t.Errorf("NetworkReady without a bridge = %+v", c)
		}
	}
	// kubelet's pod CIDR goes to the built-in network.
	if _, err := d.Runtime.UpdateRuntimeConfig(ctx, &runtime.UpdateRuntimeConfigRequest{RuntimeConfig: &runtime.RuntimeConfig{
		NetworkConfig: &runtime.NetworkConfig{PodCidr: "10.232.0.0/24"}}}); err != nil {
		t.Errorf("UpdateRuntimeConfig: %v", err)
	}
	if _, err := d.Runtime.UpdateRuntimeConfig(ctx, &runtime.UpdateRuntimeConfigRequest{RuntimeConfig: &runtime.RuntimeConfig{
		NetworkConfig: &runtime.NetworkConfig{PodCidr: "not-a-cidr"}}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("UpdateRuntimeConfig with a bad CIDR: %v, want InvalidArgument", err)
	}
	var names []string
	for _, h := range st.RuntimeHandlers {
		names = append(names, h.Name)
		if h.Features == nil {
			t.Errorf("handler %s has no features", h.Name)
		}
	}
	if strings.Join(names, ",") != ",crun,runc" { // the default (crun) under "" too
		t.Errorf("handlers = %v", names)
	}
	if !strings.Contains(st.Info["config"], `"socket":`) || !strings.Contains(st.Info["handlers"], "runc") {
		t.Errorf("verbose info = %v", st.Info)
	}
	if f := st.GetFeatures(); !f.GetSupplementalGroupsPolicy() || !f.GetMountOptions() || f.GetUserNamespacesHostNetwork() {
		t.Errorf("runtime features = %v", f)
	}
	// The default network mode is auto; this host has no CNI configuration.
	if _, err := os.Stat("/etc/cni/net.d"); os.IsNotExist(err) && !strings.HasPrefix(st.Info["networkMode"], "builtin (auto: no CNI configuration") {
		t.Errorf("networkMode = %q", st.Info["networkMode"])
	}

	rc, err := d.Runtime.RuntimeConfig(ctx, &runtime.RuntimeConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := runtime.CgroupDriver_CGROUPFS
	if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
		want = runtime.CgroupDriver_SYSTEMD
	}
	if rc.GetLinux().GetCgroupDriver() != want {
		t.Errorf("cgroup driver = %v, want %v", rc.GetLinux().GetCgroupDriver(), want)
	}
}

func TestSocketModeStaleSocketAndSecondDaemon(t *testing.T) {
	d := newDaemon(t, "")
	fi, err := os.Stat(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("socket mode = %v, want socket 0660", fi.Mode())
	}

	// A second daemon on the same root is refused, and leaves the first alone.
	out, err := exec.Command(cradleBin, "serve", "--config", d.config).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "locked by pid") {
		t.Errorf("second daemon: err %v, output:\n%s", err, out)
	}
	if _, err := d.Runtime.Version(ctxT(t), &runtime.VersionRequest{}); err != nil {
		t.Errorf("first daemon after the second was refused: %v", err)
	}

	// A crash leaves a stale socket file: the next start replaces it.
	d.Kill9()
	if _, err := os.Stat(d.Socket); err != nil {
		t.Fatalf("expected the killed daemon's socket file to remain: %v", err)
	}
	d.Start()

	// A graceful stop removes the socket.
	d.Stop()
	if _, err := os.Stat(d.Socket); !os.IsNotExist(err) {
		t.Errorf("socket after SIGTERM: %v", err)
	}
	// Something that is not a socket is never deleted.
	if err := os.WriteFile(d.Socket, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(cradleBin, "serve", "--config", d.config).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not a socket") {
		t.Errorf("start over a regular file: err %v, output:\n%s", err, out)
	}
	os.Remove(d.Socket)
	d.Start()
}

func TestSocketInUseByAnotherProcessIsLeftAlone(t *testing.T) {
	d := newDaemon(t, "")
	d.Stop()
	l, err := net.Listen("unix", d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	out, err := exec.Command(cradleBin, "serve", "--config", d.config).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another process is serving") {
		t.Errorf("start on a live socket: err %v, output:\n%s", err, out)
	}
	l.Close()
	d.Start()
}

func TestConfigErrorsStopStartUp(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[images]\nmirrors = true\n"), 0o644)
	out, err := exec.Command(cradleBin, "serve", "--config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "mirrors") {
		t.Errorf("unknown key: err %v, output:\n%s", err, out)
	}
	out, err = exec.Command(cradleBin, "serve", "--config", filepath.Join(dir, "missing.toml")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "missing.toml") {
		t.Errorf("missing explicit config: err %v, output:\n%s", err, out)
	}
	out, err = exec.Command(cradleBin, "config", "default").Output()
	golden, _ := os.ReadFile("../configs/cradle.toml")
	if err != nil || string(out) != string(golden) {
		t.Errorf("cradle config default differs from configs/cradle.toml (%v)", err)
	}
}

func TestCheckReportsThisNode(t *testing.T) {
	out, err := exec.Command(cradleBin, "check").CombinedOutput()
	// The machines this runs on meet every requirement but free disk, which
	// varies; a FAIL line for anything else is a failure.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "FAIL") && !strings.Contains(line, " disk ") {
			t.Errorf("cradle check: %s", line)
		}
	}
	if err != nil && !strings.Contains(string(out), "FAIL  disk") {
		t.Fatalf("cradle check exited with %v and no FAIL line:\n%s", err, out)
	}
	for _, want := range []string{"namespaces", "overlayfs", "cgroups", "hugetlb", "runtime runc", "conmon", "kvm", "virtiofsd",
		"nftables", "cni", "socket", "disk"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %q line in:\n%s", want, out)
		}
	}
}

func TestRuntimeNotReadyWithoutItsRuntime(t *testing.T) {
	d := newDaemon(t, "[runtime]\ndefault_handler = \"ghost\"\n[runtime.handlers.ghost]\nkind = \"oci\"\nbinary = \"no-such-oci-runtime\"\n")
	st, err := d.Runtime.Status(ctxT(t), &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Status.Conditions {
		if c.Type == runtime.RuntimeReady && (c.Status || !strings.Contains(c.Message, "ghost")) {
			t.Errorf("RuntimeReady = %+v", c)
		}
	}
}

// TestDefaultHandlerAuto: with the built-in configuration (default_handler
// auto) a pod that names no handler runs on crun where crun is installed.
func TestDefaultHandlerAuto(t *testing.T) {
	testutil.RequireBinary(t, "crun")
	d := newDaemon(t, "")
	ctx := ctxT(t)
	pod, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podSandboxConfig("auto-handler")})
	if err != nil {
		t.Fatal(err)
	}
	removePodAtEnd(t, d, pod.PodSandboxId)
	st, err := d.Runtime.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: pod.PodSandboxId})
	if err != nil {
		t.Fatal(err)
	}
	if h := st.GetStatus().GetRuntimeHandler(); h != "crun" {
		t.Errorf("a pod without a handler runs on %q, want crun", h)
	}
}
