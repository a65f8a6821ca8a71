package nsbox

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"golang.org/x/sys/unix"
)

// newPodBackend is a backend with the pause program as its infra command
// and no OCI runtime: enough for pods (root, amd64).
func newPodBackend(t *testing.T) *Backend {
	t.Helper()
	testutil.RequireRoot(t)
	if runtime.GOARCH != "amd64" {
		t.Skip("the pause program is for amd64")
	}
	pause := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(pause, PauseProgram("amd64"), 0o755); err != nil {
		t.Fatal(err)
	}
	return New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, []string{pause}, nil, sandbox.HandlerFeatures{})
}

// hostnameIn reads the hostname of the UTS namespace pinned at path.
func hostnameIn(t *testing.T, path string) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open(path)
		if err != nil {
			t.Error(err)
			got <- ""
			return
		}
		defer f.Close()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			t.Error(err)
		}
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWUTS); err != nil {
			t.Error(err)
			got <- ""
			return
		}
		var u unix.Utsname
		_ = unix.Uname(&u)
		got <- unix.ByteSliceToString(u.Nodename[:])
	}()
	return <-got
}

func shmMount(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == path {
			return l
		}
	}
	return ""
}

// A pod of its own namespaces: IPC and UTS (with its hostname) pinned,
// /dev/shm a tmpfs of 64 MiB, an infra process only for a shared PID
// namespace; a pod on the host's network and IPC pins nothing and uses
// the host's /dev/shm. DeletePod leaves no pin, mount or process, and is
// idempotent.
func TestStartPodPinsItsNamespaces(t *testing.T) {
	b := newPodBackend(t)
	ctx := context.Background()
	tests := []struct {
		name     string
		cfg      sandbox.PodConfig
		pins     []string
		hostShm  bool
		infra    bool
		hostname string
	}{
		{name: "own namespaces", cfg: sandbox.PodConfig{Hostname: "web-0", PID: ctrconfig.NamespaceContainer},
			pins: []string{"ipc", "uts"}, hostname: "web-0"},
		{name: "shared PID", cfg: sandbox.PodConfig{Hostname: "web-1", PID: ctrconfig.NamespacePod},
			pins: []string{"ipc", "uts"}, infra: true, hostname: "web-1"},
		{name: "host network and IPC", cfg: sandbox.PodConfig{Network: ctrconfig.NamespaceNode, IPC: ctrconfig.NamespaceNode, PID: ctrconfig.NamespaceContainer},
			hostShm: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			pod := &sandbox.Pod{ID: "p", Dir: dir, NS: map[string]string{}, Config: tt.cfg}
			if err := b.StartPod(ctx, pod); err != nil {
				t.Fatal(err)
			}
			for _, k := range tt.pins {
				if pod.NS[k] != filepath.Join(dir, "ns-"+k) {
					t.Errorf("%s namespace at %q", k, pod.NS[k])
				} else if inode(t, pod.NS[k]) == inode(t, "/proc/self/ns/"+k) {
					t.Errorf("the pod's %s namespace is the host's (as /proc/self shows it)", k)
				}
			}
			if len(tt.pins) == 0 && (pod.NS["ipc"] != "" || pod.NS["uts"] != "") {
				t.Errorf("namespaces pinned for a host pod: %v", pod.NS)
			}
			if tt.hostname != "" {
				if got := hostnameIn(t, pod.NS["uts"]); got != tt.hostname {
					t.Errorf("hostname %q, want %q", got, tt.hostname)
				}
			}
			if tt.hostShm {
				if pod.Shm != "/dev/shm" {
					t.Errorf("shm %q, want the host's", pod.Shm)
				}
			} else if m := shmMount(t, pod.Shm); !strings.Contains(m, " tmpfs ") || !strings.Contains(m, "size=65536k") || !strings.Contains(m, "nodev") {
				t.Errorf("/dev/shm %s mounted as %q", pod.Shm, m)
			}
			if (pod.Pid != 0) != tt.infra {
				t.Errorf("infra pid %d, want one: %v", pod.Pid, tt.infra)
			}
			infra := pod.Pid
			if err := b.StopPod(ctx, pod); err != nil {
				t.Fatal(err)
			}
			if infra != 0 {
				testutil.AssertNoProcess(t, infra)
			}
			for i := 0; i < 2; i++ {
				if err := b.DeletePod(ctx, pod); err != nil {
					t.Fatalf("delete %d: %v", i+1, err)
				}
			}
			testutil.AssertNoMounts(t, dir)
			if left, _ := filepath.Glob(filepath.Join(dir, "ns-*")); len(left) > 0 {
				t.Errorf("pins left: %v", left)
			}
		})
	}
}

// A shared PID namespace needs an infra command; without one StartPod
// fails and leaves nothing.
func TestStartPodWithoutInfraCommand(t *testing.T) {
	testutil.RequireRoot(t)
	b := New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, nil, nil, sandbox.HandlerFeatures{})
	dir := t.TempDir()
	pod := &sandbox.Pod{ID: "p", Dir: dir, NS: map[string]string{}, Config: sandbox.PodConfig{PID: ctrconfig.NamespacePod}}
	if err := b.StartPod(context.Background(), pod); err == nil {
		t.Fatal("no error")
	}
	testutil.AssertNoMounts(t, dir)
}
