package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/testutil"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// vmHandler is a vm runtime handler under TCG (this host's /dev/kvm, when
// it has one, may not boot stock kernels).
const vmHandler = `
[runtime.handlers.runc]
kind = "oci"
binary = "runc"
[runtime.handlers.vm]
kind = "vm"
[runtime.handlers.vm.vm]
accel = "tcg"
`

// TestVMPodLifecycle runs microVM pods over the CRI socket: the VM boots
// in the pod's network namespace and cgroup, survives a daemon crash and
// is found again, a VM killed while the daemon was away leaves its pod
// NotReady, and Stop/Remove leave nothing behind. Two boots in all.
func TestVMPodLifecycle(t *testing.T) {
	d, image := newVMDaemon(t)
	dir := d.dir
	ctx := ctxT(t)
	var logs strings.Builder // of every daemon run (Start starts a new log)

	st, err := d.Runtime.Status(ctx, &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var handlers map[string]struct{ Problem, Accel string }
	if err := json.Unmarshal([]byte(st.Info["handlers"]), &handlers); err != nil {
		t.Fatal(err)
	}
	if h := handlers["vm"]; h.Problem != "" || !strings.HasPrefix(h.Accel, "tcg") {
		t.Fatalf("vm handler in Status: %+v", h)
	}

	run := func(t *testing.T, name string) (string, int) {
		t.Helper()
		cfg := podSandboxConfig(name)
		start := time.Now()
		resp, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg, RuntimeHandler: "vm"})
		if err != nil {
			t.Fatalf("RunPodSandbox: %v", err)
		}
		t.Logf("VM pod %s ready in %v", name, time.Since(start))
		id := resp.PodSandboxId
		b, err := os.ReadFile(filepath.Join(dir, "run", "pods", id, "qemu.pid"))
		if err != nil {
			t.Fatalf("QEMU's pid file: %v", err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return id, pid
	}
	podState := func(t *testing.T, id string) runtime.PodSandboxState {
		t.Helper()
		s, err := d.Runtime.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: id})
		if err != nil {
			t.Fatal(err)
		}
		return s.Status.State
	}
	remove := func(t *testing.T, id string, pid int) {
		t.Helper()
		if _, err := d.Runtime.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("StopPodSandbox: %v", err)
		}
		testutil.AssertNoProcess(t, pid)
		if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("RemovePodSandbox: %v", err)
		}
		assertNoPodLeaks(t, d)
		assertNoVMs(t, dir)
	}

	t.Run("boot, daemon crash, re-attach, stop", func(t *testing.T) {
		id, pid := run(t, "vm-a")
		if got := podState(t, id); got != runtime.PodSandboxState_SANDBOX_READY {
			t.Fatalf("pod is %v", got)
		}
		assertNotInherited(t, d, pid)
		var qemuNS, podNS syscall.Stat_t
		if err := syscall.Stat("/proc/"+strconv.Itoa(pid)+"/ns/net", &qemuNS); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Stat(filepath.Join(dir, "run", "netns", id), &podNS); err != nil {
			t.Fatal(err)
		}
		if qemuNS.Ino != podNS.Ino {
			t.Errorf("QEMU's netns is inode %d, the pod's %d", qemuNS.Ino, podNS.Ino)
		}
		cg, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(cg, []byte("/pod-"+id[:12]+"/pod-"+id[:12]+"-infra\n")) {
			t.Errorf("QEMU is not in the pod's cgroup:\n%s", cg)
		}

		k := &podKit{t: t, d: d, ctx: ctx, image: image, pod: id, podCfg: podSandboxConfig("vm-a")}
		k.podCfg.LogDirectory = "" // no log: the container writes a file of its own
		ctr := k.run("counter", nil, "sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /count; sleep 0.1; done")
		before, _ := k.exec(ctr, "cat", "/count")

		logs.WriteString(d.Logs())
		d.Kill9()
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("QEMU died with the daemon: %v", err)
		}
		d.Start()
		if got := podState(t, id); got != runtime.PodSandboxState_SANDBOX_READY {
			t.Fatalf("after a daemon crash the pod is %v", got)
		}
		if st := k.status(ctr); st.State != runtime.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("after a daemon crash the container is %v", st.State)
		}
		after, _ := k.exec(ctr, "cat", "/count")
		a, _ := strconv.Atoi(after)
		b, _ := strconv.Atoi(before)
		if a <= b {
			t.Errorf("the container's counter went from %s to %s across the daemon's crash", before, after)
		}
		remove(t, id, pid)
	})

	t.Run("VM killed while the daemon is away", func(t *testing.T) {
		id, pid := run(t, "vm-b")
		logs.WriteString(d.Logs())
		d.Stop()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "QEMU to die", func() bool {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			return err != nil || strings.Contains(string(b), ") Z ")
		})
		d.Start()
		if got := podState(t, id); got != runtime.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("pod whose VM was killed is %v, want NotReady", got)
		}
		remove(t, id, pid)
	})

	t.Run("VM killed while the daemon runs", func(t *testing.T) {
		id, pid := run(t, "vm-c")
		k := &podKit{t: t, d: d, ctx: ctx, image: image, pod: id, podCfg: podSandboxConfig("vm-c")}
		ctr := k.run("sleeper", nil, "sleep", "1000")
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the pod to turn NotReady", func() bool { return podState(t, id) == runtime.PodSandboxState_SANDBOX_NOTREADY })
		if st := k.waitExited(ctr); st.ExitCode != 137 {
			t.Errorf("container of a killed VM: exit %d, want 137", st.ExitCode)
		}
		remove(t, id, pid)
	})

	t.Run("daemon killed mid-boot", func(t *testing.T) {
		errc := make(chan error, 1)
		go func() {
			_, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podSandboxConfig("vm-d"), RuntimeHandler: "vm"})
			errc <- err
		}()
		waitFor(t, "QEMU to start", func() bool {
			m, _ := filepath.Glob(filepath.Join(dir, "run", "pods", "*", "qemu.pid"))
			return len(m) > 0
		})
		logs.WriteString(d.Logs())
		d.Kill9()
		<-errc
		d.Start()
		waitFor(t, "the interrupted pod to be undone", func() bool {
			r, err := d.Runtime.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
			return err == nil && len(r.Items) == 0
		})
		assertNoPodLeaks(t, d)
		assertNoVMs(t, dir)
	})

	// The figures and steps the daemon reported: preparation, accel, boots, stops.
	logs.WriteString(d.Logs())
	for _, l := range strings.Split(logs.String(), "\n") {
		for _, m := range []string{"vm handler prepared", "pod VM ready", "vm stopped", "own process ended"} {
			if strings.Contains(l, m) {
				t.Log(l)
			}
		}
	}
}

// assertNoVMs fails t if a QEMU or virtiofsd of a pod under dir still runs, or a VM
// socket is left under dir.
func assertNoVMs(t testing.TB, dir string) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte(dir)) && (bytes.Contains(b, []byte("cradle-pod-")) || bytes.Contains(b, []byte("virtiofsd"))) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			testutil.AssertNoProcess(t, pid)
		}
	}
	_ = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Type()&os.ModeSocket != 0 && strings.HasSuffix(p, ".sock") && !strings.HasSuffix(p, "cradle.sock") {
			t.Errorf("socket left: %s", p)
		}
		return nil
	})
}
