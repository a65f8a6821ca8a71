package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
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

// podKit runs containers of one image in one pod of one handler.
type podKit struct {
	t      *testing.T
	d      *daemon
	ctx    context.Context
	image  string
	pod    string
	podCfg *runtime.PodSandboxConfig
}

func newPodKit(t *testing.T, d *daemon, image, handler string, podCfg *runtime.PodSandboxConfig) *podKit {
	t.Helper()
	ctx := ctxT(t)
	if podCfg.LogDirectory == "" {
		podCfg.LogDirectory = filepath.Join(d.dir, "logs", podCfg.Metadata.Name+"-"+handler)
	}
	resp, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg, RuntimeHandler: handler})
	if err != nil {
		t.Fatalf("RunPodSandbox (%s): %v", handler, err)
	}
	k := &podKit{t: t, d: d, ctx: ctx, image: image, pod: resp.PodSandboxId, podCfg: podCfg}
	t.Cleanup(func() {
		if _, err := d.Runtime.RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: k.pod}); err != nil {
			t.Errorf("remove pod: %v", err)
		}
	})
	return k
}

// create makes a container (name and image filled in when empty).
func (k *podKit) create(cfg *runtime.ContainerConfig) (string, error) {
	if cfg.Image == nil {
		cfg.Image = spec(k.image)
	}
	if cfg.LogPath == "" {
		cfg.LogPath = cfg.Metadata.Name + ".log"
	}
	resp, err := k.d.Runtime.CreateContainer(k.ctx, &runtime.CreateContainerRequest{PodSandboxId: k.pod, Config: cfg, SandboxConfig: k.podCfg})
	return resp.GetContainerId(), err
}

// run creates and starts a container, failing the test on error.
func (k *podKit) run(name string, cfg *runtime.ContainerConfig, cmd ...string) string {
	k.t.Helper()
	if cfg == nil {
		cfg = &runtime.ContainerConfig{}
	}
	cfg.Metadata = &runtime.ContainerMetadata{Name: name}
	if cmd != nil {
		cfg.Command = cmd
	}
	id, err := k.create(cfg)
	if err != nil {
		k.t.Fatalf("create %s: %v", name, err)
	}
	if _, err := k.d.Runtime.StartContainer(k.ctx, &runtime.StartContainerRequest{ContainerId: id}); err != nil {
		k.t.Fatalf("start %s: %v", name, err)
	}
	return id
}

// exec runs cmd in the container and returns its stdout and exit code.
func (k *podKit) exec(id string, cmd ...string) (string, int32) {
	k.t.Helper()
	res, err := k.d.Runtime.ExecSync(k.ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 20})
	if err != nil {
		k.t.Fatalf("exec %v in %s: %v", cmd, id, err)
	}
	return strings.TrimSpace(string(res.Stdout)), res.ExitCode
}

func (k *podKit) status(id string) *runtime.ContainerStatus {
	k.t.Helper()
	st, err := k.d.Runtime.ContainerStatus(k.ctx, &runtime.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		k.t.Fatalf("status of %s: %v", id, err)
	}
	return st.Status
}

func (k *podKit) waitExited(id string) *runtime.ContainerStatus {
	k.t.Helper()
	var st *runtime.ContainerStatus
	waitFor(k.t, "container "+id+" to exit", func() bool {
		st = k.status(id)
		return st.State == runtime.ContainerState_CONTAINER_EXITED
	})
	return st
}

// handlers are the OCI handlers every container feature is tested with.
var handlers = []string{"runc", "crun"}

func startFeatureDaemon(t testing.TB) (*daemon, string) {
	t.Helper()
	testutil.RequireBinary(t, "conmon")
	for _, h := range handlers {
		testutil.RequireBinary(t, h)
	}
	reg := fixtures.StartRegistry(t)
	ref := reg.Ref("busybox:1")
	reg.Push(t, ref, fixtures.Busybox(t))
	d := newDaemon(t, "")
	if _, err := d.Images.PullImage(ctxT(t), &runtime.PullImageRequest{Image: spec(ref)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		assertNoPodLeaks(t, d)
		assertNoContainerProcesses(t, d)
	})
	return d, ref
}

func withPID(cfg *runtime.PodSandboxConfig, mode runtime.NamespaceMode) *runtime.PodSandboxConfig {
	cfg.Linux.SecurityContext.NamespaceOptions.Pid = mode
	return cfg
}

func containerSC(sc *runtime.LinuxContainerSecurityContext) *runtime.ContainerConfig {
	if sc.NamespaceOptions == nil {
		sc.NamespaceOptions = &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}
	}
	return &runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{SecurityContext: sc}}
}

// TestSharedPIDNamespace: a pod that shares its process namespace has an
// infra process as PID 1 that reaps, and its containers see each other.
func TestSharedPIDNamespace(t *testing.T) {
	d, image := startFeatureDaemon(t)
	for _, h := range handlers {
		t.Run(h, func(t *testing.T) {
			k := newPodKit(t, d, image, h, withPID(podSandboxConfig("shared-"+h), runtime.NamespaceMode_POD))
			pod := containerSC(&runtime.LinuxContainerSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD}})
			a := k.run("a", pod, "sleep", "1001")
			pod2 := containerSC(&runtime.LinuxContainerSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD}})
			b := k.run("b", pod2, "sleep", "1002")
			if out, _ := k.exec(b, "cat", "/proc/1/cmdline"); !strings.Contains(out, "pause") {
				t.Errorf("PID 1 of the pod is %q, want the infra process", out)
			}
			if out, _ := k.exec(b, "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"); !strings.Contains(out, "sleep 1001") {
				t.Errorf("b does not see a's process: %q", out)
			}
			// An orphan is reparented to the infra process, which reaps it.
			k.exec(b, "sh", "-c", "sleep 0.2 &")
			time.Sleep(time.Second)
			if out, _ := k.exec(b, "sh", "-c", "cat /proc/[0-9]*/stat"); strings.Contains(out, ") Z ") {
				t.Errorf("a zombie in the pod:\n%s", out)
			}
			// A container of its own PID namespace is its own PID 1.
			own := k.run("own", containerSC(&runtime.LinuxContainerSecurityContext{}), "sleep", "1003")
			if out, _ := k.exec(own, "cat", "/proc/1/cmdline"); !strings.Contains(out, "1003") {
				t.Errorf("PID 1 of a container-mode container is %q", out)
			}
			// Stopping the pod ends every process, the infra one too.
			if _, err := d.Runtime.StopPodSandbox(k.ctx, &runtime.StopPodSandboxRequest{PodSandboxId: k.pod}); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{a, b, own} {
				if st := k.status(id); st.State != runtime.ContainerState_CONTAINER_EXITED {
					t.Errorf("%s after the pod stopped: %v", id, st.State)
				}
			}
			assertNoProcessMatching(t, d.dir+"/run/pause")
		})
	}
}

// assertNoProcessMatching fails if a process's command line holds s.
func assertNoProcessMatching(t *testing.T, s string) {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), s) {
			t.Errorf("process %s left: %q", e.Name(), b)
		}
	}
}

// TestContainerBadInput: each bad request gets its code and leaves nothing.
func TestContainerBadInput(t *testing.T) {
	d, image := startFeatureDaemon(t)
	for _, h := range handlers {
		t.Run(h, func(t *testing.T) {
			k := newPodKit(t, d, image, h, podSandboxConfig("bad-"+h))
			if _, err := k.create(&runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "dup"}, Command: []string{"true"}}); err != nil {
				t.Fatal(err)
			}
			cases := []struct {
				name string
				cfg  *runtime.ContainerConfig
				code codes.Code
			}{
				{"duplicate name", &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "dup"}}, codes.AlreadyExists},
				{"escaping log path", &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "log"}, LogPath: "../../etc/x.log"}, codes.InvalidArgument},
				{"relative mount", &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "mnt"},
					Mounts: []*runtime.Mount{{ContainerPath: "data", HostPath: t.TempDir()}}}, codes.InvalidArgument},
				{"missing mount source", &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "src"},
					Mounts: []*runtime.Mount{{ContainerPath: "/data", HostPath: "/nonexistent/cradle"}}}, codes.InvalidArgument},
				{"relative working dir", &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "wd"}, WorkingDir: "tmp"}, codes.InvalidArgument},
				{"unknown image", &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "img"}, Image: spec("nosuch/image:1")}, codes.NotFound},
				// Any negative quota reads as unlimited to the kernel (issue 14, item 8).
				{"cpu quota -5", &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "quota"},
					Linux: &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: -5}}}, codes.InvalidArgument},
			}
			for _, tt := range cases {
				if _, err := k.create(tt.cfg); status.Code(err) != tt.code {
					t.Errorf("%s: %v, want %v", tt.name, err, tt.code)
				}
			}
			// A hostname that would forge lines of /etc/hostname and /etc/hosts.
			bad := podSandboxConfig("badhost-" + h)
			bad.Hostname = "web\n10.0.0.1 evil"
			if _, err := d.Runtime.RunPodSandbox(k.ctx, &runtime.RunPodSandboxRequest{Config: bad, RuntimeHandler: h}); status.Code(err) != codes.InvalidArgument {
				t.Errorf("pod hostname with a newline: %v, want InvalidArgument", err)
			}
			// The OCI runtime's own error reaches the client; nothing is left.
			id, err := k.create(&runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "noexec"}, Command: []string{"/no/such/binary"}})
			if err == nil {
				_, err = d.Runtime.StartContainer(k.ctx, &runtime.StartContainerRequest{ContainerId: id})
			}
			if err == nil || !strings.Contains(err.Error(), "/no/such/binary") {
				t.Errorf("a command that does not exist: %v", err)
			}
			if _, err := d.Runtime.CreateContainer(k.ctx, &runtime.CreateContainerRequest{PodSandboxId: "nosuchpod",
				Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "x"}, Image: spec(image)}}); status.Code(err) != codes.NotFound {
				t.Errorf("unknown pod: %v", err)
			}
			if _, err := d.Runtime.StopPodSandbox(k.ctx, &runtime.StopPodSandboxRequest{PodSandboxId: k.pod}); err != nil {
				t.Fatal(err)
			}
			if _, err := k.create(&runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "late"}}); status.Code(err) != codes.FailedPrecondition {
				t.Errorf("stopped pod: %v", err)
			}
			list, _ := d.Runtime.ListContainers(k.ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: k.pod}})
			if n := len(list.GetContainers()); n != 1 && n != 2 {
				t.Errorf("containers after the bad requests: %d", n)
			}
		})
	}
}

// TestContainerSecurityAndResources: what the spec builder makes of a
// container's config, seen from inside the container and on the host.
func TestContainerSecurityAndResources(t *testing.T) {
	d, image := startFeatureDaemon(t)
	for _, h := range handlers {
		t.Run(h, func(t *testing.T) {
			k := newPodKit(t, d, image, h, podSandboxConfig("sec-"+h))
			// User by name from the image's /etc/passwd; groups merged with
			// the image's, or strictly the ones asked for.
			merge := k.run("merge", containerSC(&runtime.LinuxContainerSecurityContext{
				RunAsUsername: "cradle", SupplementalGroups: []int64{4242}}), "sleep", "1000")
			if out, _ := k.exec(merge, "id"); out != "uid=1000(cradle) gid=1000(cradle) groups=100(users),1000(cradle),4242" {
				t.Errorf("merge policy: id = %q", out)
			}
			if u := k.status(merge).GetUser().GetLinux(); u.GetUid() != 1000 || u.GetGid() != 1000 || len(u.GetSupplementalGroups()) != 3 {
				t.Errorf("status user = %v", u)
			}
			strict := k.run("strict", containerSC(&runtime.LinuxContainerSecurityContext{
				RunAsUser: &runtime.Int64Value{Value: 1000}, SupplementalGroups: []int64{4242},
				SupplementalGroupsPolicy: runtime.SupplementalGroupsPolicy_Strict}), "sleep", "1000")
			if out, _ := k.exec(strict, "id"); out != "uid=1000(cradle) gid=1000(cradle) groups=1000(cradle),4242" {
				t.Errorf("strict policy: id = %q", out)
			}
			// Capabilities, no_new_privs, read-only rootfs.
			locked := k.run("locked", containerSC(&runtime.LinuxContainerSecurityContext{
				Capabilities:   &runtime.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_BIND_SERVICE"}},
				NoNewPrivs:     true,
				ReadonlyRootfs: true,
				Seccomp:        &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault},
			}), "sleep", "1000")
			if out, _ := k.exec(locked, "grep", "-E", "^(CapEff|NoNewPrivs|Seccomp):", "/proc/self/status"); !strings.Contains(out, "CapEff:\t0000000000000400") ||
				!strings.Contains(out, "NoNewPrivs:\t1") || !strings.Contains(out, "Seccomp:\t2") {
				t.Errorf("capabilities, no_new_privs, seccomp = %q", out)
			}
			if _, code := k.exec(locked, "touch", "/x"); code == 0 {
				t.Error("wrote to a read-only rootfs")
			}
			if _, code := k.exec(locked, "touch", "/dev/shm/x"); code != 0 {
				t.Error("cannot write the pod's /dev/shm")
			}
			// Env, working dir and mounts (read-only bind, host to container).
			host := t.TempDir()
			if err := os.WriteFile(filepath.Join(host, "f"), []byte("from the host"), 0o644); err != nil {
				t.Fatal(err)
			}
			env := k.run("env", &runtime.ContainerConfig{
				Envs: []*runtime.KeyValue{{Key: "GREETING", Value: []byte("hi")}}, WorkingDir: "/tmp/work",
				Mounts: []*runtime.Mount{{ContainerPath: "/data", HostPath: host, Readonly: true}},
			}, "sleep", "1000")
			if out, _ := k.exec(env, "sh", "-c", `echo "$GREETING $(pwd) $(cat /data/f)"`); out != "hi /tmp/work from the host" {
				t.Errorf("env, working dir, mount = %q", out)
			}
			if _, code := k.exec(env, "touch", "/data/g"); code == 0 {
				t.Error("wrote to a read-only mount")
			}
			// Resources on the live cgroup, and their update.
			res := k.run("res", &runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{
				MemoryLimitInBytes: 64 << 20, CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000,
				HugepageLimits: kubeletHugepageLimits(t)}}}, "sleep", "1000")
			checkMemoryLimit(t, k, res, 64<<20)
			if _, err := d.Runtime.UpdateContainerResources(k.ctx, &runtime.UpdateContainerResourcesRequest{ContainerId: res,
				Linux: &runtime.LinuxContainerResources{MemoryLimitInBytes: 96 << 20, CpuShares: 512}}); err != nil {
				t.Fatal(err)
			}
			checkMemoryLimit(t, k, res, 96<<20)
			if got := k.status(res).GetResources().GetLinux().GetMemoryLimitInBytes(); got != 96<<20 {
				t.Errorf("status resources: memory %d", got)
			}
		})
	}
}

// kubeletHugepageLimits is what kubelet sends in every container's
// resources: a limit of 0 for each huge page size the node has (on this
// project's hybrid CI host no v1 hugetlb hierarchy can hold them).
func kubeletHugepageLimits(t *testing.T) []*runtime.HugepageLimit {
	t.Helper()
	entries, err := os.ReadDir("/sys/kernel/mm/hugepages")
	if err != nil {
		t.Logf("no huge pages: %v", err)
	}
	out := []*runtime.HugepageLimit{}
	for _, e := range entries {
		var kb uint64
		if _, err := fmt.Sscanf(e.Name(), "hugepages-%dkB", &kb); err == nil {
			size := fmt.Sprintf("%dMB", kb/1024)
			if kb >= 1<<20 {
				size = fmt.Sprintf("%dGB", kb>>20)
			}
			out = append(out, &runtime.HugepageLimit{PageSize: size})
		}
	}
	return out
}

// checkMemoryLimit reads the container's memory limit from the host's
// cgroup files (v1 or v2).
func checkMemoryLimit(t *testing.T, k *podKit, id string, want int64) {
	t.Helper()
	st, err := k.d.Runtime.ContainerStatus(k.ctx, &runtime.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct{ CgroupPath string }
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, f := range []string{"/sys/fs/cgroup/memory" + info.CgroupPath + "/memory.limit_in_bytes", "/sys/fs/cgroup" + info.CgroupPath + "/memory.max"} {
		if b, err = os.ReadFile(f); err == nil {
			break
		}
	}
	if got := strings.TrimSpace(string(b)); got != strconv.FormatInt(want, 10) {
		t.Errorf("memory limit of %s = %q, want %d", info.CgroupPath, got, want)
	}
}

// TestContainerExitsLogsAndExec: stop signals and timeouts, OOM kills,
// exec timeouts, CRI log format with partial lines, log reopening.
func TestContainerExitsLogsAndExec(t *testing.T) {
	d, image := startFeatureDaemon(t)
	for _, h := range handlers {
		t.Run(h, func(t *testing.T) { testExitsLogsAndExec(t, d, image, h) })
	}
}

// testExitsLogsAndExec: stop timeouts and signals, OOM, exec exit codes
// and timeouts, partial log lines and log rotation, in a pod of handler h.
func testExitsLogsAndExec(t *testing.T, d *daemon, image, h string) {
	k := newPodKit(t, d, image, h, podSandboxConfig("exit-"+h))
	// PID 1 with no TERM handler ignores SIGTERM: killed at the timeout.
	stubborn := k.run("stubborn", nil, "sleep", "1000")
	if _, err := d.Runtime.StopContainer(k.ctx, &runtime.StopContainerRequest{ContainerId: stubborn, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	if st := k.status(stubborn); st.ExitCode != 137 || st.State != runtime.ContainerState_CONTAINER_EXITED {
		t.Errorf("after the stop timeout: %v exit %d", st.State, st.ExitCode)
	}
	if _, err := d.Runtime.StopContainer(k.ctx, &runtime.StopContainerRequest{ContainerId: stubborn, Timeout: 1}); err != nil {
		t.Errorf("second stop: %v", err)
	}
	// The stop signal of the config.
	quit := k.run("quit", &runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{}, StopSignal: runtime.Signal_SIGNAL_SIGUSR1},
		"sh", "-c", "trap 'exit 10' USR1; sleep 1000 & wait")
	if _, err := d.Runtime.StopContainer(k.ctx, &runtime.StopContainerRequest{ContainerId: quit, Timeout: 10}); err != nil {
		t.Fatal(err)
	}
	if st := k.status(quit); st.ExitCode != 10 {
		t.Errorf("stop signal USR1: exit %d", st.ExitCode)
	}
	// Over its memory limit, the container is OOM-killed.
	oom := k.run("oom", &runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{MemoryLimitInBytes: 16 << 20}}},
		"awk", `BEGIN { s = "x"; for (i = 0; i < 26; i++) s = s s; print "survived" }`) // 64 MiB, fast even under TCG
	if st := k.waitExited(oom); st.Reason != "OOMKilled" || st.ExitCode != 137 {
		t.Errorf("over its memory limit: reason %q exit %d", st.Reason, st.ExitCode)
	}
	// Exec: exit codes and its timeout.
	shell := k.run("shell", nil, "sh", "-c", `head -c 20000 /dev/zero | tr '\0' x; echo; echo short; trap 'echo again' HUP; while true; do sleep 0.2; done`)
	if _, code := k.exec(shell, "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("exec exit code %d", code)
	}
	if _, err := d.Runtime.ExecSync(k.ctx, &runtime.ExecSyncRequest{ContainerId: shell, Cmd: []string{"sleep", "30"}, Timeout: 1}); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("exec past its timeout: %v", err)
	}
	// The log: a 20000-byte line is split into partial entries.
	logPath := filepath.Join(k.podCfg.LogDirectory, "shell.log")
	waitFor(t, "the log", func() bool { b, _ := os.ReadFile(logPath); return strings.Contains(string(b), "stdout F short") })
	checkCRILog(t, logPath, strings.Repeat("x", 20000))
	// Rotation: rename, reopen, and the next lines go to a new file.
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Runtime.ReopenContainerLog(k.ctx, &runtime.ReopenContainerLogRequest{ContainerId: shell}); err != nil {
		t.Fatal(err)
	}
	k.exec(shell, "kill", "-HUP", "1")
	waitFor(t, "a line in the reopened log", func() bool { b, _ := os.ReadFile(logPath); return strings.Contains(string(b), "stdout F again") })
}

// checkCRILog checks every line of a CRI log and that the stdout entries
// join to a line equal to want.
func checkCRILog(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var joined strings.Builder
	partials := 0
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		f := strings.SplitN(line, " ", 4)
		if len(f) != 4 {
			t.Fatalf("malformed log line %q", line)
		}
		if _, err := time.Parse(time.RFC3339Nano, f[0]); err != nil || (f[1] != "stdout" && f[1] != "stderr") || (f[2] != "P" && f[2] != "F") {
			t.Fatalf("malformed log line %.80q", line)
		}
		joined.WriteString(f[3])
		if f[2] == "P" {
			partials++
			continue
		}
		if joined.String() == want {
			if partials == 0 {
				t.Errorf("a %d-byte line was not split", len(want))
			}
			return
		}
		joined.Reset()
		partials = 0
	}
	t.Errorf("no log entry joins to the %d-byte line", len(want))
}

// TestKill9WithTenPods: the daemon dies with 10 pods running; after its
// restart all still run, their logs have no gap, and exec, stop and remove
// work.
func TestKill9WithTenPods(t *testing.T) {
	d, image := startFeatureDaemon(t)
	ctx := ctxT(t)
	type pod struct {
		k   *podKit
		ctr string
		log string
	}
	var pods []pod
	for i := range 10 {
		h := handlers[i%len(handlers)]
		k := newPodKit(t, d, image, h, podSandboxConfig(fmt.Sprintf("crash-%d", i)))
		id := k.run("counter", nil, "sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.05; done")
		pods = append(pods, pod{k, id, filepath.Join(k.podCfg.LogDirectory, "counter.log")})
	}
	d.Kill9()
	time.Sleep(time.Second) // the containers log on while no daemon runs
	d.Start()
	for _, p := range pods {
		if st := p.k.status(p.ctr); st.State != runtime.ContainerState_CONTAINER_RUNNING {
			t.Errorf("%s after the restart: %v", p.ctr, st.State)
		}
		if out, _ := p.k.exec(p.ctr, "echo", "alive"); out != "alive" {
			t.Errorf("exec after the restart: %q", out)
		}
	}
	for _, p := range pods {
		if _, err := d.Runtime.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p.k.pod}); err != nil {
			t.Fatal(err)
		}
		checkCounterLog(t, p.log, 30)
	}
	// The pods are removed by their kits' cleanups; leaks are checked after.
}

// checkCounterLog checks that the log holds "line 0" .. "line N" with no
// gap and N >= atLeast.
func checkCounterLog(t *testing.T, path string, atLeast int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	next := 0
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, " ", 4)
		if len(f) != 4 {
			t.Fatalf("malformed log line %q", line)
		}
		if f[3] != fmt.Sprintf("line %d", next) {
			t.Fatalf("%s: want \"line %d\", got %q", path, next, f[3])
		}
		next++
	}
	if next < atLeast {
		t.Errorf("%s: only %d lines", path, next)
	}
}

// TestMountPropagation: Bidirectional and HostToContainer mounts propagate
// from a shared source; a private source is refused with the fix named.
func TestMountPropagation(t *testing.T) {
	d, image := startFeatureDaemon(t)
	for _, h := range handlers {
		t.Run(h, func(t *testing.T) {
			podCfg := podSandboxConfig("prop-" + h)
			podCfg.Linux.SecurityContext.Privileged = true
			k := newPodKit(t, d, image, h, podCfg)
			src := t.TempDir()
			for _, step := range [][]string{{"--bind", src, src}, {"--make-shared", src}} {
				if out, err := exec.Command("mount", step...).CombinedOutput(); err != nil {
					t.Fatalf("mount %v: %v %s", step, err, out)
				}
			}
			t.Cleanup(func() { _ = exec.Command("umount", "-R", src).Run() })
			for _, sub := range []string{"from-container", "from-host"} {
				if err := os.Mkdir(filepath.Join(src, sub), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			mounts := []*runtime.Mount{
				{ContainerPath: "/bi", HostPath: src, Propagation: runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL},
				{ContainerPath: "/h2c", HostPath: src, Propagation: runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
			}
			cfg := containerSC(&runtime.LinuxContainerSecurityContext{Privileged: true})
			cfg.Mounts = mounts
			id := k.run("prop", cfg, "sleep", "1000")
			if _, code := k.exec(id, "mount", "-t", "tmpfs", "ctr", "/bi/from-container"); code != 0 {
				t.Fatal("mount in the container failed")
			}
			if !mounted(t, filepath.Join(src, "from-container")) {
				t.Error("a mount made in the container did not reach the host")
			}
			if out, err := exec.Command("mount", "-t", "tmpfs", "host", filepath.Join(src, "from-host")).CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			if out, _ := k.exec(id, "cat", "/proc/self/mountinfo"); !strings.Contains(out, "/h2c/from-host") {
				t.Error("a mount made on the host did not reach the container")
			}
			// A private source: refused, naming the fix.
			private := t.TempDir()
			bad := containerSC(&runtime.LinuxContainerSecurityContext{Privileged: true})
			bad.Metadata = &runtime.ContainerMetadata{Name: "private"}
			bad.Mounts = []*runtime.Mount{{ContainerPath: "/bi", HostPath: private, Propagation: runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL}}
			if _, err := k.create(bad); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "--make-rshared") {
				t.Errorf("bidirectional from a private mount: %v", err)
			}
			if _, err := d.Runtime.StopPodSandbox(k.ctx, &runtime.StopPodSandboxRequest{PodSandboxId: k.pod}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func mounted(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), " "+path+" ")
}

// TestHostNetworkPodContainerWithoutModes: a container of a host-network
// pod is on the host's network even when its own config names no
// namespace modes (critest's containers do not).
func TestHostNetworkPodContainerWithoutModes(t *testing.T) {
	d, image := startFeatureDaemon(t)
	podCfg := podSandboxConfig("hostnet")
	podCfg.Linux.SecurityContext.NamespaceOptions.Network = runtime.NamespaceMode_NODE
	podCfg.Linux.Sysctls = nil
	k := newPodKit(t, d, image, "runc", podCfg)
	id := k.run("web", &runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{}}, "sleep", "1000")
	if out, _ := k.exec(id, "ls", "/sys/class/net"); !strings.Contains(out, testBridge) {
		t.Errorf("the container does not see the host's interfaces: %q", out)
	}
}
