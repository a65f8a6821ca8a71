package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseMemory gives the heap's garbage back to the OS at once, after
// work that left a lot of it (image pulls and imports: storage's
// Options.Idle). Left to itself the daemon would keep that memory for
// minutes: the runtime's scavenger returns free pages slowly, and
// containerd's content.Copy keeps its 1 MiB copy buffers in a sync.Pool,
// which drops an idle buffer only at the second collection after its last
// use (the first moves it to the pool's victim cache), and an idle daemon
// collects once in two minutes. So: one collection to age the pools, a
// second (in FreeOSMemory) to free what they held, then every free page
// returned. 1.4 to 2 MiB of an idle daemon's RSS after its first pulls;
// two collections of a heap of a few MiB cost a few milliseconds.
func releaseMemory() {
	runtime.GC()
	debug.FreeOSMemory()
}

// gcPercent is the daemon's GOGC: a collection when the heap has grown by
// half of what was live, not by all of it. The daemon's live heap is a
// few MiB, so collections stay cheap (well under a millisecond of CPU
// each); measured with 20 pods, the RSS it holds is 1.2-1.4 MiB lower
// (about 5%), with no change in the container path's times.
const gcPercent = 50

// tuneMemory sets the daemon's collector: gcPercent unless the operator
// set GOGC, and no heap profiling unless the debug server (the only
// reader of heap profiles) is on: its sampled stacks cost 0.2-0.3 MiB.
func tuneMemory(debugServer, gogcSet bool) {
	if !debugServer {
		runtime.MemProfileRate = 0
	}
	if !gogcSet {
		debug.SetGCPercent(gcPercent)
	}
}

// exeMapping is one of the process's mappings of its own executable.
type exeMapping struct {
	start, end uintptr
	rss        uint64 // bytes resident
}

// unmapExecutable drops the process's page-table entries for its own
// executable's read-only mappings (code, read-only data, the pc tables)
// after work that ran code it will not run again soon: start-up, whose
// package initialisers run once, and pulls and imports (the registry
// client, TLS, decompression, unpacking). The pages stay in the page
// cache, and what the daemon runs next maps its pages back with a minor
// fault. Why it matters: Go lays each package's code out in one piece,
// and the kernel maps the 64 KiB around every fault of a file mapping
// (fault-around), so the initialisers of the ~150 packages linked map
// 7.5 MiB of code the daemon never runs again, which then counts in its
// RSS and, being mapped executable file pages, is the last page cache the
// kernel reclaims. Measured in `make bench-compare`: 4.8 MiB less idle
// RSS (file-backed 20.3 -> 15.5 MiB), the container path's times within
// the noise. A mapping with anonymous pages (a debugger's breakpoint or a
// uprobe, written over the code copy-on-write) is left alone: dropping it
// would drop the breakpoint. It returns the bytes unmapped.
func unmapExecutable() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return 0, err
	}
	path, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	var unmapped uint64
	for _, m := range exeMappings(smaps, path, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino) {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); errno != 0 {
			return unmapped, fmt.Errorf("madvise %#x-%#x: %w", m.start, m.end, errno)
		}
		unmapped += m.rss
	}
	return unmapped, nil
}

// exeMappings parses smaps (/proc/PID/smaps) for the private read-only
// mappings that hold no anonymous page of the file at path, or of the file
// dev major:minor, inode ino (on overlayfs the mapping names the inode of
// the layer below, with the overlay's path).
func exeMappings(smaps []byte, path string, major, minor uint32, ino uint64) []exeMapping {
	var out []exeMapping
	var cur *exeMapping
	anon := false
	flush := func() {
		if cur != nil && !anon {
			out = append(out, *cur)
		}
		cur, anon = nil, false
	}
	dev := fmt.Sprintf("%02x:%02x", major, minor)
	inode := strconv.FormatUint(ino, 10)
	for line := range bytes.Lines(smaps) {
		f := strings.Fields(string(line))
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") { // a mapping's header: range perms offset dev inode [path]
			flush()
			if len(f) < 6 || (f[1] != "r-xp" && f[1] != "r--p") {
				continue
			}
			if (f[3] != dev || f[4] != inode) && strings.Join(f[5:], " ") != path {
				continue
			}
			lo, hi, ok := strings.Cut(f[0], "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if ok && err1 == nil && err2 == nil && end > start {
				cur = &exeMapping{start: uintptr(start), end: uintptr(end)}
			}
			continue
		}
		if cur == nil || len(f) < 2 {
			continue
		}
		kib, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			cur.rss = kib << 10
		case "Anonymous:":
			anon = anon || kib > 0
		}
	}
	flush()
	return out
}

// settleMemory follows work that leaves garbage and one-time code behind
// (start-up, pulls, imports): the heap's garbage goes back to the OS
// (releaseMemory) and the executable's pages are unmapped
// (unmapExecutable).
func settleMemory(log *slog.Logger) {
	releaseMemory()
	n, err := unmapExecutable()
	if err != nil {
		log.Debug("unmap the executable's pages", "error", err)
		return
	}
	log.Debug("memory settled", "executable_pages_unmapped_kib", n>>10)
}
