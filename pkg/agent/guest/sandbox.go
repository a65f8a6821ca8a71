package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// defaultShmSize is the pod's /dev/shm when the host gives no size
// (Docker's and containerd's 64 MiB).
const defaultShmSize = 64 << 20

// SetupSandbox makes the pod inside the guest: its hostname, its /dev/shm
// tmpfs, its sysctls and its shared directory. Running it again converges
// (a new shm size is applied by remounting).
func (r *Runtime) SetupSandbox(req *api.SetupSandboxRequest) error {
	if err := reseed(req.Entropy); err != nil {
		return err
	}
	if err := setClock(req.HostTimeUnixNs); err != nil {
		return err
	}
	if req.Hostname != "" {
		if err := unix.Sethostname([]byte(req.Hostname)); err != nil {
			return fmt.Errorf("set the hostname: %w", err)
		}
	}
	size := req.ShmSizeBytes
	if size <= 0 {
		size = defaultShmSize
	}
	if err := mountShm(r.cfg.ShmDir, size); err != nil {
		return err
	}
	if err := writeSysctls(req.Sysctls); err != nil {
		return err
	}
	if req.SharedTag != "" {
		if err := mountShared(req.SharedTag, req.SharedFs, r.cfg.SharedDir); err != nil {
			return err
		}
	}
	return nil
}

// mountShm mounts (or resizes) the pod's shm tmpfs at dir.
func mountShm(dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("make %s: %w", dir, err)
	}
	mounted, err := mountinfo.Mounted(dir)
	if err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if mounted {
		flags |= unix.MS_REMOUNT
	}
	data := fmt.Sprintf("mode=1777,size=%d", size)
	if err := unix.Mount("shm", dir, "tmpfs", flags, data); err != nil {
		return fmt.Errorf("mount the pod's shm at %s (%s): %w", dir, data, err)
	}
	return nil
}

// mountShared mounts the pod's share tag at dir, once: virtiofs, or 9p
// (fs "9p"), whose mmap cache mode gives containers shared writable
// mappings and keeps files coherent with the host's side.
func mountShared(tag, fs, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("make %s: %w", dir, err)
	}
	mounted, err := mountinfo.Mounted(dir)
	if err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	if mounted {
		return nil
	}
	fstype, data := "virtiofs", ""
	switch fs {
	case "", "virtiofs":
	case "9p":
		fstype, data = "9p", "trans=virtio,version=9p2000.L,msize=524288,cache=mmap"
	default:
		return fmt.Errorf("shared filesystem %q: not virtiofs or 9p: %w", fs, errdefs.ErrInvalidArgument)
	}
	if err := unix.Mount(tag, dir, fstype, unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		return fmt.Errorf("mount the shared directory (%s %q) at %s: %w", fstype, tag, dir, err)
	}
	return nil
}

// reseed mixes b into the kernel's input pool and reseeds its RNG from it
// at once (RNDRESEEDCRNG), so that what any process draws next depends on
// b: two guests restored from one snapshot hold the same RNG state until
// then.
func reseed(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("reseed the RNG: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("reseed the RNG: %w", err)
	}
	if err := unix.IoctlSetInt(int(f.Fd()), unix.RNDRESEEDCRNG, 0); err != nil {
		return fmt.Errorf("reseed the RNG: %w", err)
	}
	return nil
}

// writeSysctls writes each sysctl under /proc/sys, in key order.
func writeSysctls(sysctls map[string]string) error {
	keys := make([]string, 0, len(sysctls))
	for k := range sysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p, err := sysctlPath(k)
		if err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(sysctls[k]), 0); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", k, sysctls[k], err)
		}
	}
	return nil
}

// sysctlPath is the /proc/sys file of a sysctl name (dots or slashes as
// separators, as runc takes them).
func sysctlPath(key string) (string, error) {
	rel := strings.ReplaceAll(key, ".", "/")
	p := filepath.Join("/proc/sys", rel)
	if key == "" || strings.Contains(key, "..") || !strings.HasPrefix(p, "/proc/sys/") {
		return "", fmt.Errorf("sysctl %q: %w", key, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// clockSlack is how far the guest's clock may be from the host's before
// SetupSandbox sets it.
const clockSlack = time.Second

// setClock sets the guest's wall clock to the host's (the guest has no
// RTC), unless ns is 0 or the clock is already close.
func setClock(ns int64) error {
	if ns <= 0 {
		return nil
	}
	now := time.Now().UnixNano()
	if d := now - ns; d < int64(clockSlack) && d > -int64(clockSlack) {
		return nil
	}
	ts := unix.NsecToTimespec(ns)
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("set the guest's clock: %w", err)
	}
	return nil
}
