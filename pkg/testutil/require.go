// Package testutil holds what cradle's tests share: Require… checks that
// skip with a reason (or fail under CRADLE_TEST_STRICT=1, as CI runs), and
// leak snapshots.
package testutil

import (
	"os"
	"os/exec"
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

// RequireCRIU needs a criu on PATH whose `criu check` passes on this
// kernel. Debian 12's CRIU 3.17 fails it on kernels from 6.13 on (they
// split the vvar mapping, which CRIU learnt in 4.0), and no newer CRIU is
// in Debian 12 or reachable from CI: that is the host's limit, not a
// missing prerequisite, so the test skips with CRIU's error even under
// CRADLE_TEST_STRICT (a missing criu binary still fails there).
func RequireCRIU(t testing.TB) {
	t.Helper()
	p := RequireBinary(t, "criu")
	if out, err := exec.Command(p, "check").CombinedOutput(); err != nil {
		t.Skip("the host's CRIU cannot checkpoint on this kernel: " + p + " check: " + err.Error() + ": " + lastLines(string(out), 3))
	}
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
