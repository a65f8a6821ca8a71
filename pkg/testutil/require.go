// Package testutil holds what cradle's tests share: Require… checks that
// skip with a reason (or fail under CRADLE_TEST_STRICT=1, as CI runs), and
// leak snapshots.
package testutil

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// StrictEnv is the environment variable that turns skips into failures.
const StrictEnv = "CRADLE_TEST_STRICT"

// Strict reports whether missing prerequisites must fail tests.
func Strict() bool { return os.Getenv(StrictEnv) == "1" }

// Unmet skips t with reason, or fails it in strict mode.
func Unmet(t testing.TB, reason string) {
	t.Helper()
	if Strict() {
		t.Fatalf("%s (%s=1: prerequisites must be met)", reason, StrictEnv)
	}
	t.Skip(reason)
}

// RequireRoot needs uid 0 (mounts, overlayfs, chown of layer files).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unmet(t, "needs root")
	}
}

// RequireBinary needs name on PATH and returns its path.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unmet(t, "needs "+name+" on PATH")
	}
	return p
}

// RequireExecutable needs the executable file at path (a tool the build
// makes rather than one on PATH); hint says how to get it.
func RequireExecutable(t testing.TB, path, hint string) string {
	t.Helper()
	if fi, err := os.Stat(path); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		Unmet(t, "needs the executable "+path+" ("+hint+")")
	}
	return path
}

// RequireCRIU needs a criu on PATH of at least MinCRIU that passes
// `criu check` on this kernel (make criu builds one from Debian's source
// where the host's is not). Older ones fail the check on kernels from 6.13
// on (Debian 12's 3.17: split vvar), or pass it and then hang in the
// parasite on `runc checkpoint` (3.17 and 4.1.1 on 6.18): a test would wait
// out CheckpointContainer's deadline and fail for the host's CRIU.
func RequireCRIU(t testing.TB) {
	t.Helper()
	p := RequireBinary(t, "criu")
	out, _ := exec.Command(p, "--version").CombinedOutput()
	v := criuVersion(string(out))
	if !versionAtLeast(v, MinCRIU) {
		Unmet(t, "needs CRIU "+MinCRIU+" or newer, "+p+" is "+v+" (make criu)")
	}
	if out, err := exec.Command(p, "check").CombinedOutput(); err != nil {
		Unmet(t, "the host's CRIU cannot checkpoint on this kernel: "+p+" check: "+err.Error()+": "+lastLines(string(out), 3)+" (make criu)")
	}
}

// MinCRIU is the oldest CRIU the checkpoint tests trust (see RequireCRIU).
const MinCRIU = "4.2"

// criuVersion is the version in `criu --version`'s "Version: x.y.z" line.
func criuVersion(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Version:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// versionAtLeast compares dotted decimal versions; anything unparsable is
// older than every version.
func versionAtLeast(v, least string) bool {
	a, b := strings.Split(v, "."), strings.Split(least, ".")
	for i := 0; i < max(len(a), len(b)); i++ {
		x, y := 0, 0
		if i < len(a) {
			n, err := strconv.Atoi(a[i])
			if err != nil {
				return false
			}
			x = n
		}
		if i < len(b) {
			y, _ = strconv.Atoi(b[i])
		}
		if x != y {
			return x > y
		}
	}
	return true
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
