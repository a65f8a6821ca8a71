package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// assertNoContainerProcesses fails if a monitor or runtime process of ours
// is still around.
func assertNoContainerProcesses(t testing.TB, d *daemon) {
	t.Helper()
	for _, cmd := range cmdlines() {
		if strings.HasPrefix(cmd, cradleBin+"\x00") {
			continue // the daemon itself (its config path may name runc)
		}
		if strings.Contains(cmd, d.dir) && (strings.HasPrefix(cmd, "/usr/bin/conmon") || strings.Contains(cmd, "runc") || strings.Contains(cmd, "crun")) {
			t.Errorf("process left: %s", strings.ReplaceAll(cmd, "\x00", " "))
		}
	}
}

// cmdlines are the command lines of the host's processes (arguments
// NUL-terminated; a zombie's is empty).
func cmdlines() []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil {
			out = append(out, string(b))
		}
	}
	return out
}

func TestContainerLifecycle(t *testing.T) {
	testutil.RequireBinary(t, "conmon")
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("busybox:1"), fixtures.Busybox(t))
	d := newDaemon(t, "")
	ctx := ctxT(t)
	if _, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(reg.Ref("busybox:1"))}); err != nil {
		t.Fatal(err)
	}
	podCfg := podSandboxConfig("app")
	podCfg.LogDirectory = filepath.Join(d.dir, "logs")
	pod, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	ctrCfg := &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: "main"},
		Image:    spec(reg.Ref("busybox:1")),
		// PID 1 ignores SIGTERM unless it handles it: this one does.
		Command: []string{"sh", "-c", "trap 'exit 143' TERM; echo hello from the container; sleep 1000 & wait"},
		LogPath: "main.log",
	}
	created, err := d.Runtime.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: ctrCfg, SandboxConfig: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	id := created.ContainerId
	if _, err := d.Runtime.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(podCfg.LogDirectory, "main.log")
	waitFor(t, "the container's log line", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), " stdout F hello from the container")
	})
	res, err := d.Runtime.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, Timeout: 10})
	if err != nil || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" || res.ExitCode != 3 {
		t.Errorf("ExecSync = %+v, %v", res, err)
	}
	st, err := d.Runtime.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id})
	if err != nil || st.Status.State != runtime.ContainerState_CONTAINER_RUNNING || st.Status.LogPath != logPath || st.Status.ImageRef == "" {
		t.Fatalf("status = %+v, %v", st, err)
	}

	// A container kubelet gives no log path still runs.
	nolog, err := d.Runtime.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: podCfg,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "nolog"}, Image: spec(reg.Ref("busybox:1")), Command: []string{"sleep", "1000"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Runtime.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: nolog.ContainerId}); err != nil {
		t.Fatal(err)
	}
	if res, err := d.Runtime.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: nolog.ContainerId, Cmd: []string{"true"}}); err != nil || res.ExitCode != 0 {
		t.Errorf("exec in a container without a log: %+v, %v", res, err)
	}

	// The daemon dies; the container does not, and is found again.
	d.Kill9()
	d.Start()
	st, err = d.Runtime.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id})
	if err != nil || st.Status.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after kill -9: %+v, %v", st, err)
	}
	if res, err := d.Runtime.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"echo", "still here"}}); err != nil || string(res.Stdout) != "still here\n" {
		t.Errorf("ExecSync after restart = %+v, %v", res, err)
	}
	if _, err := d.Runtime.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: 5}); err != nil {
		t.Fatal(err)
	}
	st, _ = d.Runtime.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id})
	if st.GetStatus().GetState() != runtime.ContainerState_CONTAINER_EXITED || st.Status.ExitCode != 143 || st.Status.FinishedAt == 0 {
		t.Errorf("after stop: %+v", st.GetStatus())
	}
	if _, err := d.Runtime.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("exec into an exited container: %v", err)
	}
	if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	list, _ := d.Runtime.ListContainers(ctx, &runtime.ListContainersRequest{})
	if len(list.GetContainers()) != 0 {
		t.Errorf("containers after the pod's removal: %v", list.GetContainers())
	}
	assertNoPodLeaks(t, d)
	assertNoContainerProcesses(t, d)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	waitWithin(t, 20*time.Second, what, ok)
}

// waitWithin is waitFor with a bound of d (work inside a TCG guest is
// slow, the more so on a loaded host).
func waitWithin(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestExitedRootfsLeavesOtherNamespaces: once a container has exited, its
// rootfs mount is gone from every mount namespace, also from those that
// took a copy while it ran (a crun conmon's on a hybrid-cgroup host
// starts from a copy of the host's mounts), not only when it is removed.
func TestExitedRootfsLeavesOtherNamespaces(t *testing.T) {
	d, image := startFeatureDaemon(t)
	k := newPodKit(t, d, image, "crun", podSandboxConfig("exited-rootfs"))
	first := k.run("first", nil, "sleep", "1000")
	second := k.run("second", nil, "sleep", "1000")
	rootfs := filepath.Join(d.dir, "run", "containers", first, "rootfs")
	conmon := conmonOf(t, second)
	holds := func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", conmon))
		if err != nil {
			t.Fatalf("the second container's conmon: %v", err)
		}
		return strings.Contains(string(b), " "+rootfs+" ")
	}
	if !holds() {
		t.Skip("crun's conmons share the host's mount namespace here (no hybrid cgroups): nothing to release")
	}
	if _, err := d.Runtime.StopContainer(k.ctx, &runtime.StopContainerRequest{ContainerId: first, Timeout: 0}); err != nil {
		t.Fatal(err)
	}
	k.waitExited(first)
	waitFor(t, "the exited container's rootfs to leave the other conmon's mount namespace", func() bool { return !holds() })
	if _, err := os.Stat(rootfs); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the exited container's rootfs mount point is left: %v", err)
	}
	if _, err := d.Runtime.RemoveContainer(k.ctx, &runtime.RemoveContainerRequest{ContainerId: first}); err != nil {
		t.Errorf("RemoveContainer after the release: %v", err)
	}
}

// conmonOf is the pid of the conmon that monitors container id.
func conmonOf(t *testing.T, id string) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.TrimSpace(string(comm)) == "conmon" && strings.Contains(string(cmd), "\x00"+id+"\x00") {
			return pid
		}
	}
	t.Fatalf("no conmon of %s", id)
	return 0
}
