package guest

import (
	"errors"

	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/moby/sys/mountinfo"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
	"github.com/cradle-runtime/cradle/pkg/testutil"
)

// inNewNamespaces runs fn (which must not call t.Fatal) on a thread of its
// own in new namespaces (flags), with mounts kept from the host's (/ a
// slave). The thread ends with fn: nothing of its namespaces outlives it.
func inNewNamespaces(t *testing.T, flags int, fn func()) {
	t.Helper()
	testutil.RequireRoot(t)
	done := make(chan struct{})
	go onSpareThread(func() {
		defer close(done)
		if err := unix.Unshare(flags); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		if flags&unix.CLONE_NEWNS != 0 {
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
				t.Errorf("make / a slave: %v", err)
				return
			}
		}
		fn()
	})
	<-done
}

// onSpareThread runs fn locked to a thread that is not the main one and
// that ends with it. The main thread must keep the process's namespaces:
// Go never ends it, and /proc/self shows its view (a goroutine that exits
// locked to it leaves it wedged in whatever namespaces fn made).
func onSpareThread(fn func()) {
	runtime.LockOSThread()
	if unix.Gettid() == unix.Getpid() {
		// Hold the main thread so the new goroutine cannot run here.
		done := make(chan struct{})
		go func() {
			defer close(done)
			onSpareThread(fn)
		}()
		<-done
		runtime.UnlockOSThread()
		return
	}
	fn() // never unlocked: the thread ends with this goroutine
}

func TestSetupSandbox(t *testing.T) {
	dir := t.TempDir()
	rt := &Runtime{cfg: RuntimeConfig{ShmDir: filepath.Join(dir, "shm"), SharedDir: filepath.Join(dir, "shared")}}
	inNewNamespaces(t, unix.CLONE_NEWNS|unix.CLONE_NEWUTS|unix.CLONE_NEWIPC|unix.CLONE_NEWNET, func() {
		for _, size := range []int64{0, 8 << 20} { // the second call resizes
			err := rt.SetupSandbox(&api.SetupSandboxRequest{
				Hostname: "pod-a", ShmSizeBytes: size,
				Sysctls: map[string]string{"kernel.shmmni": "1234", "net.ipv4.ip_unprivileged_port_start": "80"},
			})
			if err != nil {
				t.Errorf("size %d: %v", size, err)
				return
			}
			checkShm(t, rt.cfg.ShmDir, size)
		}
		var u unix.Utsname
		_ = unix.Uname(&u)
		if h := unix.ByteSliceToString(u.Nodename[:]); h != "pod-a" {
			t.Errorf("hostname %q", h)
		}
		for p, want := range map[string]string{
			"/proc/sys/kernel/shmmni":                       "1234",
			"/proc/sys/net/ipv4/ip_unprivileged_port_start": "80",
		} {
			if b, _ := os.ReadFile(p); strings.TrimSpace(string(b)) != want {
				t.Errorf("%s = %q, want %s", p, b, want)
			}
		}
		if err := rt.SetupSandbox(&api.SetupSandboxRequest{Sysctls: map[string]string{"../x": "1"}}); err == nil {
			t.Error("a sysctl outside /proc/sys: no error")
		}
		_ = unix.Unmount(rt.cfg.ShmDir, unix.MNT_DETACH)
	})
}

func checkShm(t *testing.T, dir string, size int64) {
	t.Helper()
	if size == 0 {
		size = defaultShmSize
	}
	if ok, err := mountinfo.Mounted(dir); !ok || err != nil {
		t.Errorf("%s not a mount point (%v)", dir, err)
		return
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.TMPFS_MAGIC || int64(st.Blocks)*st.Bsize != size {
		t.Errorf("shm: type %#x, %d bytes (%v); want tmpfs of %d", st.Type, int64(st.Blocks)*st.Bsize, err, size)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o777 || fi.Mode()&os.ModeSticky == 0 {
		t.Errorf("shm mode %v (%v), want 1777", fi.Mode(), err)
	}
}

func TestSetupNetwork(t *testing.T) {
	oldMAC, _ := net.ParseMAC("02:00:00:00:00:01")
	newMAC, _ := net.ParseMAC("02:00:00:00:00:02")
	req := &api.SetupNetworkRequest{
		Interfaces: []*api.Interface{{Mac: oldMAC.String(), NewMac: newMAC.String(), Name: "eth0", Mtu: 1400,
			Addresses: []string{"10.9.0.5/24"}}},
		Routes: []*api.Route{{Gateway: "10.9.0.1", Device: "eth0"}, {Destination: "10.10.0.0/16", Device: "eth0"}},
	}
	inNewNamespaces(t, unix.CLONE_NEWNET, func() {
		// A veth stands in for the VM's virtio NIC (no dummy module here).
		nic := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nic0", HardwareAddr: oldMAC}, PeerName: "nic0p"}
		if err := netlink.LinkAdd(nic); err != nil {
			t.Error(err)
			return
		}
		for range 2 { // idempotent
			if err := SetupNetwork(req); err != nil {
				t.Error(err)
				return
			}
		}
		checkLink(t, newMAC)
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			t.Error(err)
			return
		}
		var def, onLink bool
		for _, r := range routes {
			ones := 0
			if r.Dst != nil {
				ones, _ = r.Dst.Mask.Size()
			}
			def = def || (ones == 0 && r.Gw.Equal(net.ParseIP("10.9.0.1")))
			onLink = onLink || (r.Dst.String() == "10.10.0.0/16" && r.Gw == nil && r.Scope == netlink.SCOPE_LINK)
		}
		if !def || !onLink {
			t.Errorf("routes %v: default via 10.9.0.1 %v, 10.10.0.0/16 on-link %v", routes, def, onLink)
		}
		if err := SetupNetwork(&api.SetupNetworkRequest{Interfaces: []*api.Interface{{Mac: "02:00:00:00:00:99", Name: "x"}}}); err == nil {
			t.Error("a NIC that is not there: no error")
		}
	})
}

func checkLink(t *testing.T, mac net.HardwareAddr) {
	t.Helper()
	l, err := netlink.LinkByName("eth0")
	if err != nil {
		t.Error(err)
		return
	}
	a := l.Attrs()
	if a.HardwareAddr.String() != mac.String() || a.MTU != 1400 || a.Flags&net.FlagUp == 0 {
		t.Errorf("eth0: mac %s mtu %d flags %v", a.HardwareAddr, a.MTU, a.Flags)
	}
	addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.9.0.5/24" {
		t.Errorf("eth0 addresses %v", addrs)
	}
	if lo, err := netlink.LinkByName("lo"); err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("lo not up (%v)", err)
	}
}

func TestReseed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("RNDRESEEDCRNG needs CAP_SYS_ADMIN")
	}
	if err := reseed(nil); err != nil {
		t.Errorf("reseed(nil) = %v, want nil: nothing to do", err)
	}
	if err := reseed([]byte("fresh bytes of the host's RNG")); err != nil {
		t.Errorf("reseed: %v", err)
	}
}

func TestMountSharedRefusesAnUnknownFilesystem(t *testing.T) {
	err := mountShared("cradle", "nfs", t.TempDir())
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("mountShared(nfs) = %v, want InvalidArgument", err)
	}
}
