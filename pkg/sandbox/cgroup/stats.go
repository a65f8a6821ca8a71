package cgroup

import (
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
)

// Stats is what the CRI's stats calls need of a cgroup, the same on every
// layout.
type Stats struct {
	CPUUsageNanos    uint64 // cumulative CPU time
	MemoryUsage      uint64 // bytes charged, page cache included
	MemoryWorkingSet uint64 // usage less inactive file cache: what kubelet evicts on
	MemoryRSS        uint64 // anonymous memory
	PageFaults       uint64
	MajorPageFaults  uint64
	Pids             uint64 // tasks in the cgroup
}

// Stats reads the cgroup at p.
func (m *Manager) Stats(p string) (Stats, error) {
	if err := validPath(p); err != nil {
		return Stats{}, err
	}
	if m.V2() {
		cg, err := cgroup2.Load(p)
		if err != nil {
			return Stats{}, notFound(p, err)
		}
		st, err := cg.Stat()
		if err != nil {
			return Stats{}, err
		}
		var out Stats
		if c := st.GetCPU(); c != nil {
			out.CPUUsageNanos = c.GetUsageUsec() * 1000
		}
		if mem := st.GetMemory(); mem != nil {
			out.MemoryUsage = mem.GetUsage()
			out.MemoryWorkingSet = workingSet(mem.GetUsage(), mem.GetInactiveFile())
			out.MemoryRSS = mem.GetAnon()
			out.PageFaults = mem.GetPgfault()
			out.MajorPageFaults = mem.GetPgmajfault()
		}
		out.Pids = st.GetPids().GetCurrent()
		return out, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(p))
	if err != nil {
		return Stats{}, notFound(p, err)
	}
	st, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return Stats{}, err
	}
	var out Stats
	out.CPUUsageNanos = st.GetCPU().GetUsage().GetTotal()
	if mem := st.GetMemory(); mem != nil {
		out.MemoryUsage = mem.GetUsage().GetUsage()
		out.MemoryWorkingSet = workingSet(mem.GetUsage().GetUsage(), mem.GetTotalInactiveFile())
		out.MemoryRSS = mem.GetTotalRSS()
		out.PageFaults = mem.GetTotalPgFault()
		out.MajorPageFaults = mem.GetTotalPgMajFault()
	}
	out.Pids = st.GetPids().GetCurrent()
	return out, nil
}

func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile > usage {
		return 0
	}
	return usage - inactiveFile
}
