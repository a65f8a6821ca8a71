package integration

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// usernsHandler is the handler on a runc with idmapped mounts (>= 1.2),
// which `make runc-userns` builds; CRADLE_TEST_RUNC_USERNS names another.
const usernsHandler = "runc-userns"

// runcUserNS is the path of that runc.
func runcUserNS(t *testing.T) string {
	t.Helper()
	p := os.Getenv("CRADLE_TEST_RUNC_USERNS")
	if p == "" {
		abs, err := filepath.Abs(filepath.Join("..", "_output", "tools", "runc-userns", "runc"))
		if err != nil {
			t.Fatal(err)
		}
		p = abs
	}
	return testutil.RequireExecutable(t, p, "make runc-userns builds it")
}

// usernsPodConfig is a hostUsers: false pod as kubelet sends it: one
// mapping of 65536 IDs from a multiple of 65536.
func usernsPodConfig(name string, host uint32) *runtime.PodSandboxConfig {
	cfg := podSandboxConfig(name)
	m := []*runtime.IDMapping{{ContainerId: 0, HostId: host, Length: 65536}}
	cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: m, Gids: m}
	return cfg
}

// TestUserNamespacePod: a hostUsers: false pod on a runc with idmapped
// mounts. Its containers share one user namespace, run as root inside and
// as the mapped uid outside, own the network namespace's sysfs, and write
// their volume and the pod's files through idmapped mounts as the host's
// root; the handler reports user_namespaces; nothing is left behind.
func TestUserNamespacePod(t *testing.T) {
	runc := runcUserNS(t)
	testutil.RequireBinary(t, "conmon")
	testutil.RequireBinary(t, "runc")
	reg := fixtures.StartRegistry(t)
	image := reg.Ref("busybox:1")
	reg.Push(t, image, fixtures.Busybox(t))
	d := newDaemon(t, fmt.Sprintf("[runtime]\ndefault_handler = \"runc\"\n[runtime.handlers.runc]\nkind = \"oci\"\nbinary = \"runc\"\n"+
		"[runtime.handlers.%s]\nkind = \"oci\"\nbinary = %q\n", usernsHandler, runc))
	// The mapped root must reach the rootfs: the daemon makes its
	// directories 0711, the test's temporary parents are 0700.
	for _, dir := range []string{d.dir, filepath.Dir(d.dir)} {
		if err := os.Chmod(dir, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	ctx := ctxT(t)
	if _, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(image)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { assertNoPodLeaks(t, d); assertNoContainerProcesses(t, d) })
	features := handlerUserNS(t, d)
	if !features[usernsHandler] {
		t.Fatalf("Status: %s has no user_namespaces (%v)", usernsHandler, features)
	}
	const hostID = 30 * 65536
	if !features["runc"] {
		_, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: usernsPodConfig("old-runc", hostID), RuntimeHandler: "runc"})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("userns pod on a runc without idmapped mounts: %v, want InvalidArgument", err)
		}
	}

	vol := t.TempDir() // root's, 0755: only the host's root may write it
	m := []*runtime.IDMapping{{ContainerId: 0, HostId: hostID, Length: 65536}}
	k := newPodKit(t, d, image, usernsHandler, usernsPodConfig("userns", hostID))
	ctr := &runtime.ContainerConfig{Mounts: []*runtime.Mount{{ContainerPath: "/data", HostPath: vol, UidMappings: m, GidMappings: m}}}
	a := k.run("a", ctr, "sleep", "7331")
	b := k.run("b", nil, "sleep", "7332")
	if out, _ := k.exec(a, "cat", "/proc/self/uid_map"); strings.Join(strings.Fields(out), " ") != fmt.Sprintf("0 %d 65536", hostID) {
		t.Errorf("uid_map inside = %q", out)
	}
	if out, _ := k.exec(a, "id", "-u"); out != "0" {
		t.Errorf("id -u inside = %q, want 0", out)
	}
	if uid := hostUID(t, "sleep 7331"); uid != hostID {
		t.Errorf("the container's process runs as host uid %d, want %d", uid, hostID)
	}
	nsA, _ := k.exec(a, "readlink", "/proc/self/ns/user")
	nsB, _ := k.exec(b, "readlink", "/proc/self/ns/user")
	if nsA != nsB || nsA == "" {
		t.Errorf("the pod's containers are in user namespaces %q and %q, want one", nsA, nsB)
	}
	if self, _ := os.Readlink("/proc/self/ns/user"); self == nsA {
		t.Errorf("the container is in the host's user namespace %s", self)
	}
	for _, cmd := range []string{
		"echo hi > /data/f && chown 0:0 /data/f", // the volume, through its idmapped mount
		"echo 10.0.0.9 extra >> /etc/hosts",      // a pod file
		"echo x > /dev/shm/x",                    // the pod's /dev/shm
		"test \"$(hostname)\" = userns-host && test \"$(cat /etc/hostname)\" = userns-host",
		"ls /sys/class/net | grep -qx eth0", // sysfs of the pod's own network namespace
		// The rootfs: image files keep their owners (root's inside), the
		// container's root owns "/" and may write anywhere in it.
		"test \"$(stat -c %u:%g / /etc /bin/busybox | sort -u)\" = 0:0",
		"mkdir /new && echo x > /etc/new && rm /bin/ls",
	} {
		if out, code := k.exec(a, "sh", "-c", cmd); code != 0 {
			t.Errorf("%q in the container: exit %d: %s", cmd, code, out)
		}
	}
	if fi, err := os.Stat(filepath.Join(vol, "f")); err != nil {
		t.Errorf("the container's file in its volume: %v", err)
	} else if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 {
		t.Errorf("the container's file is owned by %d:%d on the host, want 0:0 (idmapped)", st.Uid, st.Gid)
	}

	// kill -9 of the daemon: the pod keeps its namespaces, and a container
	// made after the restart joins the same user namespace.
	d.Kill9()
	d.Start()
	late := k.run("late", nil, "sleep", "7334")
	if ns, _ := k.exec(late, "readlink", "/proc/self/ns/user"); ns != nsA {
		t.Errorf("a container made after a restart is in user namespace %q, want the pod's %q", ns, nsA)
	}

	// A pod sharing its PID namespace: the infra process is PID 1 of a PID
	// namespace the pod's user namespace owns (the containers mount /proc).
	shared := usernsPodConfig("userns-shared", hostID+65536)
	shared.Linux.SecurityContext.NamespaceOptions.Pid = runtime.NamespaceMode_POD
	ks := newPodKit(t, d, image, usernsHandler, shared)
	c := ks.run("c", containerSC(&runtime.LinuxContainerSecurityContext{NamespaceOptions: shared.Linux.SecurityContext.NamespaceOptions}), "sleep", "7333")
	if out, _ := ks.exec(c, "cat", "/proc/1/cmdline"); !strings.Contains(out, "pause") {
		t.Errorf("PID 1 of the shared-PID userns pod is %q, want the infra process", out)
	}
	if uid := hostUID(t, "sleep 7333"); uid != hostID+65536 {
		t.Errorf("the shared-PID pod's container runs as host uid %d, want %d", uid, hostID+65536)
	}

	for _, pod := range []string{k.pod, ks.pod} {
		if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
			t.Fatal(err)
		}
	}
	if uid := hostUID(t, "sleep 733"); uid != -1 {
		t.Errorf("a process of the pod is left (uid %d)", uid)
	}
}

// handlerUserNS is the user_namespaces feature of each handler in Status.
func handlerUserNS(t *testing.T, d *daemon) map[string]bool {
	t.Helper()
	st, err := d.Runtime.Status(ctxT(t), &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, h := range st.RuntimeHandlers {
		out[h.Name] = h.Features.GetUserNamespaces()
	}
	return out
}

// hostUID is the real uid of the first process whose command line holds
// s, -1 when there is none.
func hostUID(t *testing.T, s string) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(strings.ReplaceAll(string(cmd), "\x00", " "), s) {
			continue
		}
		f, err := os.Open(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fields := strings.Fields(sc.Text()); len(fields) > 1 && fields[0] == "Uid:" {
				uid, _ := strconv.Atoi(fields[1])
				f.Close()
				return uid
			}
		}
		f.Close()
	}
	return -1
}
