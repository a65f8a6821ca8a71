package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// ProcessStart is the start time of process pid in clock ticks since boot
// (field 22 of /proc/<pid>/stat): with the pid, it names one process for
// good, as a pid alone does not once the process is gone.
func ProcessStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := bytes.Fields(b[i+1:])
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
