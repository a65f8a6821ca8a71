// Package cgroup makes, limits, measures and removes the cgroups of pods and
// containers on whatever layout the host has: cgroup v1, hybrid (v1
// controllers with cgroup2 beside them, as on this project's CI machines:
// the v1 controllers hold the limits there) or pure v2. The layout is
// detected, never assumed. It uses github.com/containerd/cgroups/v3.
package cgroup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cgroups "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Layout names.
const (
	LayoutV1     = "v1"
	LayoutHybrid = "hybrid"
	LayoutV2     = "v2"
)

// unifiedRoot is where cgroup v2 is mounted on a pure v2 host.
const unifiedRoot = "/sys/fs/cgroup"

// Manager handles cgroups on the detected layout.
type Manager struct {
	mode cgroups.CGMode

	v1Mu   sync.Mutex
	v1Stat []cgroup1.Subsystem // the v1 controllers Stats reads, once found
	v1Ctrl map[string]bool     // the v1 hierarchies mounted, once read
	// v1Roots are the v1 hierarchies' mount points, once read: mountinfo
	// has every mount of the host (five per pod), too long to read for
	// each pod's removal.
	v1Roots []string
}

// New detects the host's layout.
func New() (*Manager, error) {
	mode := cgroups.Mode()
	if mode == cgroups.Unavailable {
		return nil, fmt.Errorf("no cgroup hierarchy is mounted under /sys/fs/cgroup: %w", errdefs.ErrFailedPrecondition)
	}
	return &Manager{mode: mode}, nil
}

// Layout says which layout the host has.
func (m *Manager) Layout() string {
	switch m.mode {
	case cgroups.Unified:
		return LayoutV2
	case cgroups.Hybrid:
		return LayoutHybrid
	}
	return LayoutV1
}

// V2 reports whether limits live in cgroup v2 (pure v2 hosts only: on a
// hybrid host the controllers are v1).
func (m *Manager) V2() bool { return m.mode == cgroups.Unified }

// validPath accepts absolute, clean cgroup paths below the root.
func validPath(p string) error {
	if p == "" || p[0] != '/' || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("cgroup path %q must be absolute, clean and below the root: %w", p, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Create makes the cgroup at p (e.g. /kubepods/pod<uid>) with res; an
// existing one gets res applied.
func (m *Manager) Create(p string, res *specs.LinuxResources) error {
	if err := validPath(p); err != nil {
		return err
	}
	if res == nil {
		res = &specs.LinuxResources{}
	}
	if m.V2() {
		if _, err := cgroup2.NewManager(unifiedRoot, p, cgroup2.ToResources(res)); err != nil {
			return fmt.Errorf("create cgroup %s: %w", p, err)
		}
		return nil
	}
	if _, err := cgroup1.New(cgroup1.StaticPath(p), res); err != nil {
		return fmt.Errorf("create cgroup %s: %w", p, err)
	}
	return nil
}

// Update applies res to the live cgroup at p.
func (m *Manager) Update(p string, res *specs.LinuxResources) error {
	if err := validPath(p); err != nil {
		return err
	}
	if m.V2() {
		cg, err := cgroup2.Load(p)
		if err != nil {
			return notFound(p, err)
		}
		return cg.Update(cgroup2.ToResources(res))
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(p))
	if err != nil {
		return notFound(p, err)
	}
	if err := raiseMemswFirst(cg, p, res); err != nil {
		return err
	}
	return cg.Update(res)
}

// raiseMemswFirst writes a raised memory+swap limit before the memory limit
// on cgroup v1, where memory.limit_in_bytes may never exceed
// memory.memsw.limit_in_bytes (cgroups/v3 writes the memory limit first,
// and raising both fails with EINVAL).
func raiseMemswFirst(cg cgroup1.Cgroup, p string, res *specs.LinuxResources) error {
	if res == nil || res.Memory == nil || res.Memory.Swap == nil || *res.Memory.Swap <= 0 {
		return nil
	}
	for _, s := range cg.Subsystems() {
		mem, ok := s.(interface{ Path(string) string })
		if s.Name() != cgroup1.Memory || !ok {
			continue
		}
		file := filepath.Join(mem.Path(p), "memory.memsw.limit_in_bytes")
		cur, err := os.ReadFile(file)
		if errors.Is(err, os.ErrNotExist) {
			return nil // no swap accounting
		}
		if err != nil {
			return err
		}
		var current int64
		if _, err := fmt.Sscan(string(cur), &current); err != nil || current >= *res.Memory.Swap {
			return nil
		}
		if err := os.WriteFile(file, []byte(strconv.FormatInt(*res.Memory.Swap, 10)), 0); err != nil {
			return fmt.Errorf("raise %s: %w", file, err)
		}
	}
	return nil
}

// AddProcess moves pid into the cgroup at p.
func (m *Manager) AddProcess(p string, pid int) error {
	if err := validPath(p); err != nil {
		return err
	}
	if m.V2() {
		cg, err := cgroup2.Load(p)
		if err != nil {
			return notFound(p, err)
		}
		return cg.AddProc(uint64(pid))
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(p))
	if err != nil {
		return notFound(p, err)
	}
	return cg.Add(cgroup1.Process{Pid: pid})
}

// Processes lists the pids in the cgroup at p and below it.
func (m *Manager) Processes(p string) ([]int, error) {
	if err := validPath(p); err != nil {
		return nil, err
	}
	if m.V2() {
		cg, err := cgroup2.Load(p)
		if err != nil {
			return nil, notFound(p, err)
		}
		pids, err := cg.Procs(true)
		if err != nil {
			return nil, err
		}
		out := make([]int, len(pids))
		for i, pid := range pids {
			out[i] = int(pid)
		}
		return out, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(p))
	if err != nil {
		return nil, notFound(p, err)
	}
	procs, err := cg.Processes(cgroup1.Pids, true)
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(procs))
	for _, pr := range procs {
		out = append(out, pr.Pid)
	}
	return out, nil
}

// Delete removes the cgroup at p, first killing (SIGKILL) what still runs in
// it and waiting, until ctx ends, for it to go. A missing cgroup is not an
// error.
//
// With cgroup v1 the path is a directory in each hierarchy, removed one
// after the other: a daemon killed in between leaves some of them, and
// the library's view of the cgroup (every hierarchy has it) no longer
// loads. So v1 works on the directories that exist: the processes of any
// of them are killed, then each directory goes.
func (m *Manager) Delete(ctx context.Context, p string) error {
	if err := validPath(p); err != nil {
		return err
	}
	if !m.V2() {
		return m.deleteV1(ctx, p)
	}
	for {
		pids, err := m.Processes(p)
		if errdefs.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := killAll(ctx, p, pids); err != nil || len(pids) == 0 {
			if err != nil {
				return err
			}
			break
		}
	}
	cg, err := cgroup2.Load(p)
	if err != nil {
		return nil
	}
	return ignoreNotExist(cg.Delete())
}

// killAll kills pids and waits a moment for them to go (the caller looks
// again); none is nothing to do.
func killAll(ctx context.Context, p string, pids []int) error {
	if len(pids) == 0 {
		return nil
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	select {
	case <-ctx.Done():
		return fmt.Errorf("delete cgroup %s: processes %v still running: %w", p, pids, ctx.Err())
	case <-time.After(20 * time.Millisecond):
		return nil
	}
}

// deleteV1 is Delete for cgroup v1 (and hybrid) hosts, directory by
// directory.
func (m *Manager) deleteV1(ctx context.Context, p string) error {
	roots, err := m.v1Mountpoints()
	if err != nil {
		return err
	}
	var dirs []string
	for _, r := range roots {
		dirs = append(dirs, filepath.Join(r, p))
	}
	if m.mode == cgroups.Hybrid {
		// OCI runtimes also make the path in the cgroup2 tree that sits
		// beside the v1 controllers; it holds no controllers but must go too.
		dirs = append(dirs, filepath.Join(hybridUnified, p))
	}
	for {
		pids, err := procsUnder(dirs)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			break
		}
		if err := killAll(ctx, p, pids); err != nil {
			return err
		}
	}
	var errs []error
	for _, d := range dirs {
		errs = append(errs, removeTree(d))
	}
	return errors.Join(errs...)
}

// v1Mountpoints are the mount points of the cgroup v1 hierarchies (each
// once), read at the first call.
func (m *Manager) v1Mountpoints() ([]string, error) {
	m.v1Mu.Lock()
	defer m.v1Mu.Unlock()
	if m.v1Roots != nil {
		return m.v1Roots, nil
	}
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		return nil, fmt.Errorf("read cgroup mounts: %w", err)
	}
	roots := []string{}
	for _, mnt := range mounts {
		if !slices.Contains(roots, mnt.Mountpoint) {
			roots = append(roots, mnt.Mountpoint)
		}
	}
	m.v1Roots = roots
	return roots, nil
}

// procsUnder lists the processes of the cgroup directories dirs and of
// their children (a missing directory has none).
func procsUnder(dirs []string) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	var walk func(dir string) error
	walk = func(dir string) error {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
				seen[pid] = true
				out = append(out, pid)
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil // gone meanwhile
		}
		for _, e := range entries {
			if e.IsDir() {
				if err := walk(filepath.Join(dir, e.Name())); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, d := range dirs {
		if err := walk(d); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// hybridUnified is where a hybrid host mounts cgroup2.
const hybridUnified = "/sys/fs/cgroup/unified"

// removeTree removes an empty cgroup directory and its children, deepest
// first (cgroup directories go with rmdir, never unlink).
func removeTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove cgroup %s: %w", dir, err)
	}
	return nil
}

func notFound(p string, err error) error {
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, cgroup1.ErrCgroupDeleted) {
		return fmt.Errorf("cgroup %s: %w", p, errdefs.ErrNotFound)
	}
	return fmt.Errorf("cgroup %s: %w", p, err)
}

func ignoreNotExist(err error) error {
	if err == nil || errors.Is(err, os.ErrNotExist) || errors.Is(err, cgroup1.ErrCgroupDeleted) {
		return nil
	}
	return err
}
