package cgroup

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup1"
	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/cgroups/v3/cgroup2"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
)

// Stats is what the CRI's stats and metrics calls need of a cgroup, the
// same on every layout. Times are nanoseconds, sizes bytes.
type Stats struct {
	CPU    CPUStats
	Memory MemoryStats
	Pids   uint64 // tasks in the cgroup
	// PidsLimit is the pids controller's limit (pids.max); 0: unlimited.
	PidsLimit uint64
	// BlockIO is the cgroup's I/O by device and operation, as the blkio
	// (v1) or io (v2) controller counts it; empty where it counts none.
	BlockIO []BlockIO
	// PSI is the pressure stall information, where the kernel keeps it for
	// this cgroup (cgroup2 only: on a hybrid host, the same path in the
	// cgroup2 tree). Nil fields: none.
	PSI PSI
}

// CPUStats is cumulative CPU time and CFS throttling, and the weight and
// period the cgroup is set to (cAdvisor's spec figures).
type CPUStats struct {
	UsageNanos       uint64
	UserNanos        uint64
	SystemNanos      uint64
	Periods          uint64 // CFS enforcement periods elapsed
	ThrottledPeriods uint64
	ThrottledNanos   uint64
	// Shares is cpu.shares on v1, cpu.weight converted back to shares on
	// v2; PeriodMicros the CFS period (cpu.cfs_period_us, cpu.max). 0:
	// unreadable.
	Shares       uint64
	PeriodMicros uint64
}

// MemoryStats is the memory charged to the cgroup.
type MemoryStats struct {
	Usage           uint64 // charged, page cache included
	WorkingSet      uint64 // usage less inactive file cache: what kubelet evicts on
	RSS             uint64 // anonymous memory
	Cache           uint64 // page cache
	MappedFile      uint64
	ActiveFile      uint64
	InactiveFile    uint64
	MaxUsage        uint64 // peak usage (0 where the kernel keeps none)
	Failcnt         uint64 // times the limit was hit (cgroup v1 only)
	Limit           uint64 // 0: unlimited
	PageFaults      uint64 // hierarchical: the cgroup's and its descendants'
	MajorPageFaults uint64
	// OwnPageFaults and OwnMajorPageFaults are the faults of the cgroup's
	// own tasks (v1's pgfault and pgmajfault); cgroup v2 counts
	// hierarchically only, so there they equal the hierarchical figures.
	OwnPageFaults      uint64
	OwnMajorPageFaults uint64
	// KernelUsage is kernel memory charged to the cgroup: v1's
	// memory.kmem.usage_in_bytes, v2's memory.stat kernel.
	KernelUsage uint64
	SwapUsage   uint64
	SwapLimit   uint64 // 0: unlimited or no swap accounting
	OOMEvents   uint64 // OOM kills (cgroup v2 only)
}

// BlockIO is one block device's I/O of one operation. Op is what the
// kernel names it: Read, Write, Sync, Async, Discard or Total on cgroup
// v1; Read or Write on v2.
type BlockIO struct {
	Device       string // /dev/<name> from /proc/partitions; "" if not listed there
	Major, Minor uint64
	Op           string
	Bytes        uint64 // bytes transferred
	IOs          uint64 // requests completed
}

// PSI is pressure stall information by resource.
type PSI struct {
	CPU, Memory, IO *Pressure
}

// Pressure is one resource's stall information.
type Pressure struct {
	Some, Full PressureData
}

// PressureData is one line of a pressure file: averages in percent, Total
// in nanoseconds.
type PressureData struct {
	Avg10, Avg60, Avg300 float64
	TotalNanos           uint64
}

// unlimited is the threshold above which a limit means "none" (cgroup v1
// writes a page-rounded 2^63-1, the library reports v2's "max" as 2^64-1).
const unlimited = 1 << 62

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
			return Stats{}, notFound(p, err)
		}
		out := fromV2(st)
		dir := filepath.Join(unifiedRoot, p)
		out.Memory.KernelUsage = v2KernelMemory(filepath.Join(dir, "memory.stat"), st.GetMemory())
		out.CPU.Shares, out.CPU.PeriodMicros = v2CPUSpec(dir)
		return out, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(p), cgroup1.WithHierarchy(m.statHierarchy))
	if err != nil {
		return Stats{}, notFound(p, err)
	}
	st, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return Stats{}, notFound(p, err)
	}
	out := fromV1(st)
	if subs, err := m.statHierarchy(); err == nil {
		out.CPU.Shares, out.CPU.PeriodMicros = v1CPUSpec(subs, p)
	}
	if m.Layout() == LayoutHybrid {
		out.PSI = readPSI(filepath.Join(hybridUnified, p))
	}
	return out, nil
}

// statControllers are the cgroup v1 controllers Stats reads; the others
// (hugetlb, rdma...) are not reported.
var statControllers = map[cgroup1.Name]bool{
	cgroup1.Cpu: true, cgroup1.Cpuacct: true, cgroup1.Memory: true, cgroup1.Pids: true, cgroup1.Blkio: true,
}

// statHierarchy lists the v1 controllers Stats reads, found once: the
// library's default re-reads the mount table on every call.
func (m *Manager) statHierarchy() ([]cgroup1.Subsystem, error) {
	m.v1Mu.Lock()
	defer m.v1Mu.Unlock()
	if m.v1Stat != nil {
		return m.v1Stat, nil
	}
	all, err := cgroup1.Default()
	if err != nil {
		return nil, err
	}
	for _, s := range all {
		if statControllers[s.Name()] {
			m.v1Stat = append(m.v1Stat, s)
		}
	}
	return m.v1Stat, nil
}

// fromV1 converts cgroup v1 figures; the hierarchical (total_) counters are
// used, so a pod's figures include its containers'.
func fromV1(st *v1.Metrics) Stats {
	var out Stats
	cpu := st.GetCPU()
	out.CPU = CPUStats{
		UsageNanos: cpu.GetUsage().GetTotal(), UserNanos: cpu.GetUsage().GetUser(), SystemNanos: cpu.GetUsage().GetKernel(),
		Periods: cpu.GetThrottling().GetPeriods(), ThrottledPeriods: cpu.GetThrottling().GetThrottledPeriods(),
		ThrottledNanos: cpu.GetThrottling().GetThrottledTime(),
	}
	if mem := st.GetMemory(); mem != nil {
		usage := mem.GetUsage().GetUsage()
		out.Memory = MemoryStats{
			Usage: usage, WorkingSet: workingSet(usage, mem.GetTotalInactiveFile()),
			RSS: mem.GetTotalRSS(), Cache: mem.GetTotalCache(), MappedFile: mem.GetTotalMappedFile(),
			ActiveFile: mem.GetTotalActiveFile(), InactiveFile: mem.GetTotalInactiveFile(),
			MaxUsage: mem.GetUsage().GetMax(), Failcnt: mem.GetUsage().GetFailcnt(), Limit: limit(mem.GetUsage().GetLimit()),
			PageFaults: mem.GetTotalPgFault(), MajorPageFaults: mem.GetTotalPgMajFault(),
			OwnPageFaults: mem.GetPgFault(), OwnMajorPageFaults: mem.GetPgMajFault(),
			KernelUsage: mem.GetKernel().GetUsage(),
		}
		// memsw counts memory and swap together.
		if sw := mem.GetSwap(); sw != nil && sw.GetUsage() >= usage {
			out.Memory.SwapUsage = sw.GetUsage() - usage
			if l := limit(sw.GetLimit()); l != 0 && out.Memory.Limit != 0 && l >= out.Memory.Limit {
				out.Memory.SwapLimit = l - out.Memory.Limit
			}
		}
	}
	out.Pids, out.PidsLimit = st.GetPids().GetCurrent(), limit(st.GetPids().GetLimit())
	out.BlockIO = fromV1Blkio(st.GetBlkio())
	return out
}

// fromV1Blkio pairs the bytes and requests of each device and operation
// (the recursive files, or the throttle layer's where the I/O scheduler
// keeps none: the library falls back to them).
func fromV1Blkio(st *v1.BlkIOStat) []BlockIO {
	type key struct {
		major, minor uint64
		op           string
	}
	var out []BlockIO
	at := map[key]int{}
	entry := func(e *v1.BlkIOEntry) *BlockIO {
		k := key{e.GetMajor(), e.GetMinor(), e.GetOp()}
		i, ok := at[k]
		if !ok {
			i = len(out)
			at[k] = i
			out = append(out, BlockIO{Device: e.GetDevice(), Major: k.major, Minor: k.minor, Op: k.op})
		}
		return &out[i]
	}
	for _, e := range st.GetIoServiceBytesRecursive() {
		entry(e).Bytes = e.GetValue()
	}
	for _, e := range st.GetIoServicedRecursive() {
		entry(e).IOs = e.GetValue()
	}
	return out
}

func fromV2(st *v2.Metrics) Stats {
	var out Stats
	cpu := st.GetCPU()
	out.CPU = CPUStats{
		UsageNanos: cpu.GetUsageUsec() * 1000, UserNanos: cpu.GetUserUsec() * 1000, SystemNanos: cpu.GetSystemUsec() * 1000,
		Periods: cpu.GetNrPeriods(), ThrottledPeriods: cpu.GetNrThrottled(), ThrottledNanos: cpu.GetThrottledUsec() * 1000,
	}
	if mem := st.GetMemory(); mem != nil {
		out.Memory = MemoryStats{
			Usage: mem.GetUsage(), WorkingSet: workingSet(mem.GetUsage(), mem.GetInactiveFile()),
			RSS: mem.GetAnon(), Cache: mem.GetFile(), MappedFile: mem.GetFileMapped(),
			ActiveFile: mem.GetActiveFile(), InactiveFile: mem.GetInactiveFile(),
			MaxUsage: mem.GetMaxUsage(), Limit: limit(mem.GetUsageLimit()),
			PageFaults: mem.GetPgfault(), MajorPageFaults: mem.GetPgmajfault(),
			OwnPageFaults: mem.GetPgfault(), OwnMajorPageFaults: mem.GetPgmajfault(),
			SwapUsage: mem.GetSwapUsage(), SwapLimit: limit(mem.GetSwapLimit()),
		}
	}
	out.Memory.OOMEvents = st.GetMemoryEvents().GetOomKill()
	out.Pids, out.PidsLimit = st.GetPids().GetCurrent(), limit(st.GetPids().GetLimit())
	out.BlockIO = fromV2IO(st.GetIo().GetUsage(), blockDevices)
	out.PSI = PSI{CPU: fromV2PSI(cpu.GetPSI()), Memory: fromV2PSI(st.GetMemory().GetPSI()), IO: fromV2PSI(st.GetIo().GetPSI())}
	return out
}

func fromV2PSI(p *v2.PSIStats) *Pressure {
	if p == nil {
		return nil
	}
	conv := func(d *v2.PSIData) PressureData {
		return PressureData{Avg10: d.GetAvg10(), Avg60: d.GetAvg60(), Avg300: d.GetAvg300(), TotalNanos: d.GetTotal() * 1000}
	}
	return &Pressure{Some: conv(p.GetSome()), Full: conv(p.GetFull())}
}

func limit(v uint64) uint64 {
	if v >= unlimited {
		return 0
	}
	return v
}

func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile > usage {
		return 0
	}
	return usage - inactiveFile
}

// fromV2IO converts io.stat's lines to a Read and a Write entry per device,
// named by names (called only when there is I/O to name).
func fromV2IO(usage []*v2.IOEntry, names func() map[[2]uint64]string) []BlockIO {
	if len(usage) == 0 {
		return nil
	}
	devs := names()
	out := make([]BlockIO, 0, 2*len(usage))
	for _, u := range usage {
		dev := devs[[2]uint64{u.GetMajor(), u.GetMinor()}]
		out = append(out,
			BlockIO{Device: dev, Major: u.GetMajor(), Minor: u.GetMinor(), Op: "Read", Bytes: u.GetRbytes(), IOs: u.GetRios()},
			BlockIO{Device: dev, Major: u.GetMajor(), Minor: u.GetMinor(), Op: "Write", Bytes: u.GetWbytes(), IOs: u.GetWios()})
	}
	return out
}

// blockDevices names the block devices of /proc/partitions by major and
// minor number, as the v1 library does: /dev/<name>.
func blockDevices() map[[2]uint64]string {
	f, err := os.Open("/proc/partitions")
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	return parsePartitions(bufio.NewScanner(f))
}

func parsePartitions(sc *bufio.Scanner) map[[2]uint64]string {
	out := map[[2]uint64]string{}
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 4 {
			continue // the header and the blank line after it
		}
		major, err1 := strconv.ParseUint(fields[0], 10, 64)
		minor, err2 := strconv.ParseUint(fields[1], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		out[[2]uint64{major, minor}] = "/dev/" + fields[3]
	}
	return out
}

// v2KernelMemory is memory.stat's kernel (Linux 5.18 and newer), or on
// older kernels the sum of the kernel figures the library reads
// (kernel_stack, slab, sock).
func v2KernelMemory(statFile string, mem *v2.MemoryStat) uint64 {
	if f, err := os.Open(statFile); err == nil {
		defer func() { _ = f.Close() }()
		if v, ok := statKey(bufio.NewScanner(f), "kernel"); ok {
			return v
		}
	}
	return mem.GetKernelStack() + mem.GetSlab() + mem.GetSock()
}

// statKey finds key in a flat-keyed file ("key value" lines).
func statKey(sc *bufio.Scanner, key string) (uint64, bool) {
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseUint(v, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// v1CPUSpec reads cpu.shares and cpu.cfs_period_us of the cgroup at p.
func v1CPUSpec(subs []cgroup1.Subsystem, p string) (shares, period uint64) {
	for _, s := range subs {
		cpu, ok := s.(interface{ Path(string) string })
		if s.Name() != cgroup1.Cpu || !ok {
			continue
		}
		return readUint(filepath.Join(cpu.Path(p), "cpu.shares")), readUint(filepath.Join(cpu.Path(p), "cpu.cfs_period_us"))
	}
	return 0, 0
}

// v2CPUSpec reads cpu.weight (as shares) and the period of cpu.max in dir.
func v2CPUSpec(dir string) (shares, period uint64) {
	if w := readUint(filepath.Join(dir, "cpu.weight")); w != 0 {
		shares = weightToShares(w)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cpu.max")); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			period, _ = strconv.ParseUint(f[1], 10, 64)
		}
	}
	return shares, period
}

// weightToShares inverts the conversion OCI runtimes apply to shares on
// cgroup v2 (weight = 1 + (shares-2)*9999/262142).
func weightToShares(weight uint64) uint64 {
	return 2 + (weight-1)*262142/9999
}

// readUint reads a file holding one number; 0 if it cannot.
func readUint(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}
