package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// statFields returns the fields of /proc/<pid>/stat from field 3 (state)
// on: the command (field 2) is in parentheses and may hold spaces.
func statFields(pid int) ([][]byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return bytes.Fields(b[i+1:]), nil
}

// ProcessStart is the start time of process pid in clock ticks since boot
// (field 22 of /proc/<pid>/stat): with the pid, it names one process for
// good, as a pid alone does not once the process is gone.
func ProcessStart(pid int) (uint64, error) {
	fields, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	// fields[0] is field 3 (state), so field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return strconv.ParseUint(string(fields[19]), 10, 64)
}

// ProcessAlive says whether the process pid started at start still runs (a
// zombie counts as gone).
func ProcessAlive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && len(b) > i+2 && b[i+2] == 'Z' {
		return false
	}
	got, err := ProcessStart(pid)
	return err == nil && got == start
}

// ProcessCounts are what a container's processes hold, counted from /proc
// as cAdvisor counts them.
type ProcessCounts struct {
	Processes       uint64
	Threads         uint64 // num_threads (field 20 of /proc/<pid>/stat), summed
	FileDescriptors uint64 // entries of /proc/<pid>/fd
	Sockets         uint64 // those of them that are sockets
}

// countProcesses counts over pids; a process that is gone by the time it
// is read is left out.
func countProcesses(pids []int) ProcessCounts {
	var out ProcessCounts
	for _, pid := range pids {
		fields, err := statFields(pid)
		if err != nil || len(fields) < 18 {
			continue
		}
		// fields[0] is field 3, so num_threads (field 20) is fields[17].
		threads, err := strconv.ParseUint(string(fields[17]), 10, 64)
		if err != nil {
			continue
		}
		out.Processes++
		out.Threads += threads
		dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		out.FileDescriptors += uint64(len(fds))
		for _, fd := range fds {
			if target, err := os.Readlink(dir + fd.Name()); err == nil && strings.HasPrefix(target, "socket:") {
				out.Sockets++
			}
		}
	}
	return out
}

// processExists says whether pid names a process that is not a zombie.
func processExists(pid int) bool {
	start, err := ProcessStart(pid)
	return err == nil && ProcessAlive(pid, start)
}

// withDescendants lists pid and every process below it, parents first,
// from /proc/<pid>/task/<tid>/children (a process gone meanwhile is left
// out).
func withDescendants(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		tasks, err := os.ReadDir("/proc/" + strconv.Itoa(out[i]) + "/task")
		if err != nil {
			continue
		}
		for _, t := range tasks {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(out[i]) + "/task/" + t.Name() + "/children")
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if child, err := strconv.Atoi(f); err == nil {
					out = append(out, child)
				}
			}
		}
	}
	return out
}
