package preflight

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func checkKernel(_ context.Context, f Facts) []Result {
	var out []Result
	var missing []string
	for _, ns := range []string{"net", "ipc", "uts", "pid", "mnt", "cgroup", "user"} {
		if _, err := os.Stat(filepath.Join(f.ProcRoot, "self/ns", ns)); err != nil {
			missing = append(missing, ns)
		}
	}
	if len(missing) > 0 {
		out = append(out, fail("namespaces", "missing: "+strings.Join(missing, " "), "a kernel built with CONFIG_NAMESPACES and each namespace type"))
	} else {
		out = append(out, ok("namespaces", "net ipc uts pid mnt cgroup user"))
	}
	fsys, _ := os.ReadFile(filepath.Join(f.ProcRoot, "filesystems"))
	if hasFilesystem(string(fsys), "overlay") {
		out = append(out, ok("overlayfs", "available"))
	} else {
		out = append(out, fail("overlayfs", "not in /proc/filesystems", "modprobe overlay (CONFIG_OVERLAY_FS)"))
	}
	actions, err := os.ReadFile(filepath.Join(f.ProcRoot, "sys/kernel/seccomp/actions_avail"))
	if err != nil {
		out = append(out, fail("seccomp", "no seccomp filter support", "a kernel with CONFIG_SECCOMP_FILTER"))
	} else {
		out = append(out, ok("seccomp", "actions: "+strings.TrimSpace(string(actions))))
	}
	return out
}

func hasFilesystem(list, name string) bool {
	for _, line := range strings.Split(list, "\n") {
		fields := strings.Fields(line)
		if len(fields) > 0 && fields[len(fields)-1] == name {
			return true
		}
	}
	return false
}

// Cgroup layouts.
const (
	LayoutV1     = "v1"
	LayoutHybrid = "hybrid"
	LayoutV2     = "v2"
)

// CgroupLayout tells v1, hybrid (v1 controllers plus cgroup2 at
// /sys/fs/cgroup/unified) or v2 from the filesystem types.
func CgroupLayout(sysRoot string) (string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Join(sysRoot, "fs/cgroup"), &st); err != nil {
		return "", err
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return LayoutV2, nil
	}
	if err := unix.Statfs(filepath.Join(sysRoot, "fs/cgroup/unified"), &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return LayoutHybrid, nil
	}
	return LayoutV1, nil
}

func checkCgroups(_ context.Context, f Facts) []Result {
	layout, err := CgroupLayout(f.SysRoot)
	if err != nil {
		return []Result{fail("cgroups", err.Error(), "mount cgroup2 (or the v1 hierarchies) under /sys/fs/cgroup")}
	}
	var controllers []string
	if layout == LayoutV2 {
		b, _ := os.ReadFile(filepath.Join(f.SysRoot, "fs/cgroup/cgroup.controllers"))
		controllers = strings.Fields(string(b))
	} else {
		controllers = enabledV1Controllers(filepath.Join(f.ProcRoot, "cgroups"))
	}
	var missing []string
	for _, c := range []string{"cpu", "cpuset", "memory", "pids"} {
		if !slices.Contains(controllers, c) {
			missing = append(missing, c)
		}
	}
	detail := fmt.Sprintf("%s layout; controllers: %s", layout, strings.Join(controllers, " "))
	if len(missing) > 0 {
		return []Result{fail("cgroups", detail+"; missing: "+strings.Join(missing, " "), "enable the missing controllers (kernel config or cgroup_enable= boot options)")}
	}
	if layout != LayoutV2 {
		return []Result{warn("cgroups", detail, "cgroup v2 is the layout new features need (boot with systemd.unified_cgroup_hierarchy=1); v1 and hybrid work")}
	}
	return []Result{ok("cgroups", detail)}
}

func enabledV1Controllers(procCgroups string) []string {
	fh, err := os.Open(procCgroups)
	if err != nil {
		return nil
	}
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 4 && fields[3] == "1" && !strings.HasPrefix(fields[0], "#") {
			out = append(out, fields[0])
		}
	}
	return out
}

func checkRuntimes(ctx context.Context, f Facts) []Result {
	layout, _ := CgroupLayout(f.SysRoot)
	var out []Result
	names := sortedKeys(f.Handlers)
	for _, name := range names {
		bin := f.Handlers[name]
		label := "runtime " + name
		path, err := exec.LookPath(bin)
		if err != nil {
			out = append(out, fail(label, fmt.Sprintf("%s not found", bin), "apt-get install "+filepath.Base(bin)))
			continue
		}
		version := commandLine(ctx, path, "--version")
		if filepath.Base(path) == "crun" && layout == LayoutHybrid {
			out = append(out, warn(label, version+" at "+path+"; crun refuses hybrid cgroup layouts",
				"use runc on this node, or a pure cgroup v2 host"))
			continue
		}
		out = append(out, ok(label, version+" at "+path))
	}
	return out
}

func checkDisk(_ context.Context, f Facts) []Result {
	dir := f.Root
	for {
		if _, err := os.Stat(dir); err == nil || dir == "/" {
			break
		}
		dir = filepath.Dir(dir)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return []Result{fail("disk", err.Error(), "make "+f.Root+" writable")}
	}
	free := st.Bavail * uint64(st.Bsize)
	total := st.Blocks * uint64(st.Bsize)
	detail := fmt.Sprintf("%s: %.1f GiB free of %.1f GiB, %d of %d inodes free", dir,
		float64(free)/(1<<30), float64(total)/(1<<30), st.Ffree, st.Files)
	switch {
	case free < 1<<30 || (st.Files > 0 && st.Ffree < 10000):
		return []Result{fail("disk", detail, "free space under "+f.Root+" (images and writable layers live there)")}
	case free < 10<<30 || float64(free) < 0.1*float64(total):
		return []Result{warn("disk", detail, "keep at least 10 GiB and 10% free under "+f.Root)}
	}
	return []Result{ok("disk", detail)}
}

// commandLine runs a binary and returns the first line of its output.
func commandLine(ctx context.Context, bin string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "version unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
