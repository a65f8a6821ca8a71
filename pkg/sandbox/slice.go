package sandbox

import (
	"fmt"
	"path"
	"strings"

	"github.com/containerd/errdefs"
)

// expandSlice turns a systemd slice name, as kubelet's systemd cgroup
// driver names a pod's cgroup parent, into its cgroup path: each dash
// opens a level, "kubepods-burstable-pod12.slice" is
// /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12.slice
// (systemd.slice(5)). The cgroups are then used as paths; kubelet makes the
// slices through systemd itself.
func expandSlice(slice string) (string, error) {
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("%q is not a systemd slice name: %w", slice, errdefs.ErrInvalidArgument)
	}
	if name == "-" {
		return "/", nil
	}
	if strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-") || strings.Contains(name, "--") {
		return "", fmt.Errorf("%q is not a valid slice name: %w", slice, errdefs.ErrInvalidArgument)
	}
	p, prefix := "/", ""
	for _, part := range strings.Split(name, "-") {
		prefix += part
		p = path.Join(p, prefix+".slice")
		prefix += "-"
	}
	return p, nil
}
