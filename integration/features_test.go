package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

func startFeatureDaemon(t *testing.T) (*daemon, string) {
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
			assertNoProcessMatching(t, "cradle pause")
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
			}
			for _, tt := range cases {
				if _, err := k.create(tt.cfg); status.Code(err) != tt.code {
					t.Errorf("%s: %v, want %v", tt.name, err, tt.code)
				}
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
