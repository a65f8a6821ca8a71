package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// Controllers reports the controllers that can hold limits for cgroups
// made below p (a pod's cgroup): where the OCI runtime writes them. On v1
// and hybrid hosts these are the v1 hierarchies mounted (a controller that
// only a hybrid host's cgroup2 holds, as hugetlb on this project's CI
// machines, cannot: runc and crun apply v1 limits there); on v2 they are
// those listed in p's cgroup.controllers (what its parent delegates; the
// runtime enables them in p's subtree itself).
func (m *Manager) Controllers(p string) (map[string]bool, error) {
	if err := validPath(p); err != nil {
		return nil, err
	}
	if m.V2() {
		b, err := os.ReadFile(filepath.Join(unifiedRoot, p, "cgroup.controllers"))
		if errors.Is(err, os.ErrNotExist) {
			// Not made yet: what the nearest existing ancestor has.
			if parent := filepath.Dir(p); parent != "/" {
				return m.Controllers(parent)
			}
			b, err = os.ReadFile(filepath.Join(unifiedRoot, "cgroup.controllers"))
		}
		if err != nil {
			return nil, fmt.Errorf("controllers of cgroup %s: %w", p, err)
		}
		return wordSet(string(b)), nil
	}
	m.v1Mu.Lock()
	defer m.v1Mu.Unlock()
	if m.v1Ctrl == nil {
		ctrl, err := v1Controllers()
		if err != nil {
			return nil, err
		}
		m.v1Ctrl = ctrl
	}
	return m.v1Ctrl, nil
}

// v1Controllers lists the controllers of the cgroup v1 hierarchies mounted.
func v1Controllers() (map[string]bool, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		return nil, fmt.Errorf("read cgroup mounts: %w", err)
	}
	out := map[string]bool{}
	for _, mnt := range mounts {
		for _, opt := range strings.Split(mnt.VFSOptions, ",") {
			if slices.Contains(strings.Fields(v1Names), opt) {
				out[opt] = true
			}
		}
	}
	return out, nil
}

// v1Names are the controller names a v1 mount's options can carry.
const v1Names = "cpu cpuacct cpuset memory devices freezer net_cls net_prio blkio perf_event hugetlb pids rdma misc"

func wordSet(s string) map[string]bool {
	out := map[string]bool{}
	for _, w := range strings.Fields(s) {
		out[w] = true
	}
	return out
}

// HugePageSizes lists the huge page sizes the kernel offers, in the form
// the CRI and runtime-spec use ("2MB", "1GB"), from /sys/kernel/mm/hugepages.
// A kernel without huge pages has none.
func HugePageSizes() ([]string, error) {
	return hugePageSizes("/sys/kernel/mm/hugepages")
}

func hugePageSizes(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("huge page sizes: %w", err)
	}
	var out []string
	for _, e := range entries {
		kb, ok := strings.CutPrefix(e.Name(), "hugepages-")
		kb, ok2 := strings.CutSuffix(kb, "kB")
		n, err := strconv.ParseUint(kb, 10, 64)
		if !ok || !ok2 || err != nil || n == 0 {
			continue
		}
		out = append(out, pageSizeString(n*1024))
	}
	return out, nil
}

// pageSizeString renders a page size in bytes as runc and kubelet do:
// the largest binary unit that divides it, "KB", "MB" or "GB".
func pageSizeString(bytes uint64) string {
	units := []string{"B", "KB", "MB", "GB", "TB"}
	i := 0
	for bytes >= 1024 && bytes%1024 == 0 && i < len(units)-1 {
		bytes /= 1024
		i++
	}
	return strconv.FormatUint(bytes, 10) + units[i]
}
