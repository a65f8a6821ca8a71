package sandbox

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/moby/sys/mountinfo"
)

// checkPropagation fails when a mount asks for propagation its source's
// mount cannot give: Bidirectional needs a shared mount, HostToContainer a
// shared or slave one. A private source would silently propagate nothing
// (on a host without systemd "/" is private). The error names the fix.
func checkPropagation(mounts []ctrconfig.Mount) error {
	for _, m := range mounts {
		p := m.Propagation
		if p != ctrconfig.PropagationBidirectional && p != ctrconfig.PropagationHostToContainer {
			continue
		}
		src, err := filepath.EvalSymlinks(m.HostPath)
		if err != nil {
			return fmt.Errorf("mount %q: %w: %w", m.ContainerPath, err, errdefs.ErrInvalidArgument)
		}
		mnt, err := mountOf(src)
		if err != nil {
			return fmt.Errorf("mount %q: %w", m.ContainerPath, err)
		}
		shared := strings.Contains(mnt.Optional, "shared:")
		slave := strings.Contains(mnt.Optional, "master:")
		if shared || (slave && p == ctrconfig.PropagationHostToContainer) {
			continue
		}
		want := "shared"
		if p == ctrconfig.PropagationHostToContainer {
			want = "shared or slave"
		}
		return fmt.Errorf("mount %q asks for %s propagation, but its source %s is on mount %s, which is not %s "+
			"(fix on the host: `mount --make-rshared %s`, as systemd does for /; or bind the source on itself and make that shared): %w",
			m.ContainerPath, p, src, mnt.Mountpoint, want, mnt.Mountpoint, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// mountOf is the mount that holds path (the deepest mount point above it).
func mountOf(path string) (*mountinfo.Info, error) {
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, err
	}
	var best *mountinfo.Info
	for _, m := range mounts {
		if path != m.Mountpoint && !strings.HasPrefix(path, strings.TrimSuffix(m.Mountpoint, "/")+"/") {
			continue
		}
		// Later entries stack on earlier ones at the same mount point.
		if best == nil || len(m.Mountpoint) >= len(best.Mountpoint) {
			best = m
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no mount holds %s", path)
	}
	return best, nil
}
