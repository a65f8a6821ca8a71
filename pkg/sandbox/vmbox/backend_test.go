package vmbox

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
)

func testPod(dir string) *sandbox.Pod {
	return &sandbox.Pod{ID: strings.Repeat("ab", 32), Dir: dir, NS: map[string]string{}}
}

func TestBackendRefusesSocketPathsTooLong(t *testing.T) {
	b := NewBackend(testLogger(t), Machine{QEMU: "/nonexistent/qemu", BootTimeout: time.Second}, nil)
	pod := testPod("/" + strings.Repeat("d", 100))
	pod.NetNS = "/nonexistent/netns"
	err := b.StartPod(context.Background(), pod)
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("StartPod with a %d-byte dir: %v, want FailedPrecondition", len(pod.Dir), err)
	}
	if pod.Pid != 0 {
		t.Errorf("pod.Pid = %d", pod.Pid)
	}
}

// A pod with no VM (never booted) cannot be reached, nor can it share the
// node's namespaces.
func TestBackendWithoutVMOrNetwork(t *testing.T) {
	b := NewBackend(testLogger(t), Machine{}, nil)
	if _, err := b.DialPort(context.Background(), testPod(t.TempDir()), 80); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("DialPort: %v, want FailedPrecondition", err)
	}
	if err := b.StartPod(context.Background(), testPod(t.TempDir())); !errdefs.IsInvalidArgument(err) {
		t.Errorf("StartPod of a pod on the node's network: %v, want InvalidArgument", err)
	}
}

// Stop and Delete work from the pod's fields alone and are idempotent: a
// pod whose VM is gone, or whose pid names another process now (recycled),
// or whose pid file names a process that is not its QEMU, is only cleaned.
func TestBackendStopWithoutVM(t *testing.T) {
	self, err := sandbox.ProcessStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		pid      int
		start    uint64
		pidFile  string
		wantFile bool
	}{
		{name: "nothing recorded"},
		{name: "recycled pid", pid: os.Getpid(), start: self + 1},
		{name: "pid file of another process", pidFile: strconv.Itoa(os.Getpid())},
		{name: "garbage pid file", pidFile: "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pod := testPod(dir)
			pod.Pid, pod.PidStart = tc.pid, tc.start
			spec := (&Backend{}).spec(pod)
			if tc.pidFile != "" {
				if err := os.WriteFile(spec.PIDFile(), []byte(tc.pidFile+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			b := NewBackend(testLogger(t), Machine{}, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i := 0; i < 2; i++ {
				if err := b.StopPod(ctx, pod); err != nil {
					t.Fatalf("StopPod #%d: %v", i+1, err)
				}
				if err := b.DeletePod(ctx, pod); err != nil {
					t.Fatalf("DeletePod #%d: %v", i+1, err)
				}
			}
			if _, err := os.Stat(spec.PIDFile()); !os.IsNotExist(err) {
				t.Errorf("pid file left: %v", err)
			}
			if entries, _ := os.ReadDir(filepath.Dir(spec.PIDFile())); len(entries) != 0 {
				t.Errorf("files left: %v", entries)
			}
		})
	}
}

// A container of a VM pod cannot have host devices: refused before
// anything is made.
func TestBackendRefusesHostDevices(t *testing.T) {
	b := NewBackend(testLogger(t), Machine{}, nil)
	c := &sandbox.Container{ID: "c1", Bundle: t.TempDir()}
	c.Config.Devices = []ctrconfig.Device{{HostPath: "/dev/kvm", ContainerPath: "/dev/kvm"}}
	if _, err := b.CreateContainer(context.Background(), testPod(t.TempDir()), c, &specs.Spec{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("CreateContainer with a host device: %v, want InvalidArgument", err)
	}
}
