package network

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A frame sent to the pod's IP from another pod comes out of the tap (the
// ARP request for it, at least), and the tap carries eth0's MTU.
func TestAttachTapRedirectsEth0(t *testing.T) {
	e := newEnv(t, func(c *config.Network) { c.MTU = 1400 })
	m := e.manager()
	nsA, resA := e.pod(m, "vm-a")
	nsB, _ := e.pod(m, "vm-b")
	tap, err := AttachTap(nsA, "tap0")
	if err != nil {
		t.Fatal(err)
	}
	if tap.MTU != 1400 || len(tap.MAC) != 6 {
		t.Errorf("tap = %+v", tap)
	}
	var f *os.File
	if err := WithNetNS(nsA, func() error {
		l, err := netlink.LinkByName("tap0")
		if err != nil {
			return err
		}
		if l.Attrs().MTU != 1400 {
			t.Errorf("tap MTU = %d", l.Attrs().MTU)
		}
		f, err = openTap("tap0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Both directions, as a VM would see them: pod B's ARP request for A's
	// IP comes out of the tap (eth0 ingress → tap); the "VM" answers through
	// the tap (tap ingress → eth0 egress); B's datagram then arrives.
	aIP := resA.IPs[0].To4()
	frames := make(chan []byte, 16)
	go func() {
		for {
			buf := make([]byte, 2048)
			n, err := f.Read(buf)
			if err != nil {
				close(frames)
				return
			}
			frames <- buf[:n]
		}
	}()
	sent := make(chan error, 1)
	go func() {
		sent <- WithNetNS(nsB, func() error {
			c, err := net.Dial("udp", net.JoinHostPort(aIP.String(), "9"))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("to the vm"))
			return err
		})
	}()
	deadline := time.After(5 * time.Second)
	answered := false
	for done := false; !done; {
		select {
		case fr, ok := <-frames:
			if !ok {
				t.Fatal("tap closed")
			}
			switch {
			case len(fr) >= 42 && fr[12] == 0x08 && fr[13] == 0x06 && fr[21] == 1 && net.IP(fr[38:42]).Equal(aIP) && !answered:
				if _, err := f.Write(arpReply(fr, tap.MAC, aIP)); err != nil {
					t.Fatal(err)
				}
				answered = true
			case answered && strings.Contains(string(fr), "to the vm"):
				done = true
			}
		case <-deadline:
			t.Fatalf("no round trip through the tap (ARP answered: %v)", answered)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if err := DetachTap(nsA, "tap0"); err != nil {
		t.Fatal(err)
	}
	if err := DetachTap(nsA, "tap0"); err != nil {
		t.Errorf("second DetachTap: %v", err)
	}
}

// arpReply answers the ARP request req for ip from mac.
func arpReply(req []byte, mac net.HardwareAddr, ip net.IP) []byte {
	senderMAC, senderIP := req[22:28], req[28:32]
	fr := make([]byte, 0, 42)
	fr = append(fr, senderMAC...)
	fr = append(fr, mac...)
	fr = append(fr, 0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2)
	fr = append(fr, mac...)
	fr = append(fr, ip...)
	fr = append(fr, senderMAC...)
	return append(fr, senderIP...)
}

// openTap attaches to the persistent tap as a VMM would (IFF_TAP|IFF_NO_PI).
func openTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var req struct {
		name  [unix.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	copy(req.name[:], name)
	req.flags = unix.IFF_TAP | unix.IFF_NO_PI
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req))); errno != 0 {
		unix.Close(fd)
		return nil, errno
	}
	return os.NewFile(uintptr(fd), name), nil
}
