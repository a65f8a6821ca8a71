package nsbox

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"golang.org/x/sys/unix"
)

// nsGetUserNS is ioctl_ns(2)'s NS_GET_USERNS: the owning user namespace.
const nsGetUserNS = 0xb701

// owner is the inode of the user namespace that owns the namespace pinned
// at path.
func owner(t *testing.T, path string) uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), nsGetUserNS, 0)
	if errno != 0 {
		t.Fatalf("NS_GET_USERNS %s: %v", path, errno)
	}
	defer unix.Close(int(fd))
	var st unix.Stat_t
	if err := unix.Fstat(int(fd), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestStartPodInAUserNamespace: the pod's user namespace owns its network,
// IPC and UTS namespaces (and its PID namespace when shared); the helper
// that made them is gone unless it is the infra process; DeletePod leaves
// no pin, mount or process.
func TestStartPodInAUserNamespace(t *testing.T) {
	b := newPodBackend(t)
	m := []ctrconfig.IDMapping{{HostID: 40 * 65536, Size: 65536}}
	for _, pid := range []ctrconfig.NamespaceMode{ctrconfig.NamespaceContainer, ctrconfig.NamespacePod} {
		t.Run(map[ctrconfig.NamespaceMode]string{ctrconfig.NamespaceContainer: "own PID", ctrconfig.NamespacePod: "shared PID"}[pid], func(t *testing.T) {
			dir := t.TempDir()
			pod := &sandbox.Pod{ID: "p", Dir: dir, NS: map[string]string{},
				Config: sandbox.PodConfig{Hostname: "h", PID: pid, UserNS: &ctrconfig.IDMappings{UIDs: m, GIDs: m}}}
			if err := b.StartPod(context.Background(), pod); err != nil {
				t.Fatal(err)
			}
			user := inode(t, pod.NS["user"])
			self := inode(t, "/proc/self/ns/user")
			if user == self {
				t.Fatal("the pod's user namespace is the host's")
			}
			pinned := map[string]string{"net": pod.NetNS, "ipc": pod.NS["ipc"], "uts": pod.NS["uts"]}
			if pid == ctrconfig.NamespacePod {
				if pod.Pid == 0 {
					t.Fatal("no infra process for a shared PID namespace")
				}
				pinned["pid"] = pod.NS["pid"]
			} else if pod.Pid != 0 {
				t.Errorf("the helper is kept as pid %d", pod.Pid)
			}
			for kind, p := range pinned {
				if got := owner(t, p); got != user {
					t.Errorf("the %s namespace at %s is owned by user namespace %d, want the pod's %d", kind, p, got, user)
				}
			}
			if fi, err := os.Stat(pod.Shm); err != nil || fi.Sys().(*syscall.Stat_t).Uid != m[0].HostID {
				t.Errorf("/dev/shm %s: %v, want owned by the mapped root", pod.Shm, err)
			}
			infra := pod.Pid
			if err := b.DeletePod(context.Background(), pod); err != nil {
				t.Fatal(err)
			}
			testutil.AssertNoMounts(t, dir)
			if infra != 0 {
				testutil.AssertNoProcess(t, infra)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, "ns-*")); len(left) > 0 {
				t.Errorf("pins left: %v", left)
			}
		})
	}
}
