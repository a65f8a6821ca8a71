package testutil

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Mounts returns the mount points below prefix, from /proc/self/mountinfo.
func Mounts(t testing.TB, prefix string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatalf("read mountinfo: %v", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], prefix) {
			out = append(out, fields[4])
		}
	}
	return out
}

// AssertNoMounts fails t if anything is mounted below prefix.
func AssertNoMounts(t testing.TB, prefix string) {
	t.Helper()
	if m := Mounts(t, prefix); len(m) > 0 {
		t.Errorf("leaked mounts under %s: %v", prefix, m)
	}
}

// AssertNoProcess fails t if a process with this pid still exists (and is
// not a zombie waiting for its parent).
func AssertNoProcess(t testing.TB, pid int) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return
	}
	if fields := strings.Fields(string(b)); len(fields) > 2 && fields[2] != "Z" {
		t.Errorf("process %d still running: %s", pid, strings.TrimSpace(string(b)))
	}
}
