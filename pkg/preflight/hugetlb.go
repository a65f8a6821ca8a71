package preflight

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cradle-runtime/cradle/pkg/cgroup"
)

// hugePages is one huge page size the kernel offers.
type hugePages struct {
	size            string // as the kernel names it: 2048kB
	reserved, avail uint64 // nr_hugepages, free_hugepages
}

// checkHugetlb says whether pods can have huge pages with their limits
// enforced: the kernel must offer some, and the cgroups pods get must have
// the hugetlb controller, as the engine decides it (cgroup.Controllers).
func checkHugetlb(_ context.Context, f Facts) []Result {
	pages, perr := readHugePages(filepath.Join(f.SysRoot, "kernel/mm/hugepages"))
	layout, _ := CgroupLayout(f.SysRoot)
	var ctrl map[string]bool
	cg, cerr := cgroup.New()
	if cerr == nil {
		ctrl, cerr = cg.Controllers(f.CgroupRoot)
	}
	return []Result{hugetlbResult(layout, ctrl, cerr, pages, perr)}
}

func hugetlbResult(layout string, ctrl map[string]bool, cerr error, pages []hugePages, perr error) Result {
	const name = "hugetlb"
	switch {
	case perr != nil:
		return warn(name, perr.Error(), "")
	case len(pages) == 0:
		return warn(name, "the kernel offers no huge pages: pods asking for hugepages-* get none", "a kernel with CONFIG_HUGETLBFS")
	case cerr != nil:
		return warn(name, "controllers of pod cgroups: "+cerr.Error(), "")
	case !ctrl["hugetlb"]:
		fix := map[string]string{
			LayoutHybrid: "on this hybrid host hugetlb is bound to the cgroup2 hierarchy, where runc and crun apply no v1 limits: " +
				"boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2)",
			LayoutV1: "mount its hierarchy: mkdir /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb hugetlb /sys/fs/cgroup/hugetlb",
			LayoutV2: "enable it for pods: echo +hugetlb > cgroup.subtree_control of /sys/fs/cgroup and each parent of runtime.cgroup_root",
		}[layout]
		return warn(name, fmt.Sprintf("no hugetlb controller for pod cgroups (%s layout): the hugepages-* limits kubelet sets are not enforced",
			layout), fix)
	}
	var sizes []string
	var reserved uint64
	for _, p := range pages {
		sizes = append(sizes, fmt.Sprintf("%s: %d reserved, %d free", p.size, p.reserved, p.avail))
		reserved += p.reserved
	}
	detail := "controller available to pod cgroups; " + strings.Join(sizes, "; ")
	if reserved == 0 {
		detail += " (none reserved: sysctl vm.nr_hugepages)"
	}
	return ok(name, detail)
}

// readHugePages reads the sizes under dir (/sys/kernel/mm/hugepages); a
// kernel without huge pages has no such directory.
func readHugePages(dir string) ([]hugePages, error) {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []hugePages
	for _, e := range ents {
		size, found := strings.CutPrefix(e.Name(), "hugepages-")
		if !found {
			continue
		}
		p := hugePages{size: size}
		p.reserved = readUint(filepath.Join(dir, e.Name(), "nr_hugepages"))
		p.avail = readUint(filepath.Join(dir, e.Name(), "free_hugepages"))
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		return len(out[i].size) < len(out[j].size) || len(out[i].size) == len(out[j].size) && out[i].size < out[j].size
	})
	return out, nil
}

func readUint(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}
