package preflight

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/cradle-runtime/cradle/pkg/sandbox/vmbox"
	"github.com/google/go-cmp/cmp"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestParsers(t *testing.T) {
	dir := t.TempDir()
	if !hasFilesystem("nodev\tcgroup2\nnodev\toverlay\n\text4\n", "overlay") || hasFilesystem("nodev\toverlayfs\n", "overlay") {
		t.Error("hasFilesystem")
	}
	write(t, filepath.Join(dir, "cgroups"), "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t2\t10\t1\nmemory\t3\t10\t1\nrdma\t0\t1\t0\n")
	if diff := cmp.Diff([]string{"cpu", "memory"}, enabledV1Controllers(filepath.Join(dir, "cgroups"))); diff != "" {
		t.Error(diff)
	}
	write(t, filepath.Join(dir, "status"), "Name:\tx\nCapBnd:\t000001fffeffffff\n")
	if got := procStatusField(filepath.Join(dir, "status"), "CapBnd"); got != "000001fffeffffff" {
		t.Errorf("CapBnd = %q", got)
	}
	write(t, filepath.Join(dir, "private"), "21 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n")
	write(t, filepath.Join(dir, "shared"), "21 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n")
	if rootShared(filepath.Join(dir, "private")) || !rootShared(filepath.Join(dir, "shared")) {
		t.Error("rootShared")
	}
}

func TestPrivilegesFromFakeProc(t *testing.T) {
	proc := t.TempDir()
	write(t, filepath.Join(proc, "self/status"), "CapBnd:\t000001fffeffffff\n")
	write(t, filepath.Join(proc, "self/mountinfo"), "21 1 254:0 / / rw - ext4 /dev/vda rw\n")
	res := checkPrivileges(context.Background(), Facts{ProcRoot: proc})
	byName := map[string]Status{}
	for _, r := range res {
		byName[r.Name] = r.Status
	}
	if byName["CAP_SYS_RESOURCE"] != Warn || byName["mount propagation"] != Warn {
		t.Errorf("results = %+v", res)
	}
}

func TestWrite(t *testing.T) {
	var b bytes.Buffer
	failed := Write(&b, []Result{ok("a", "fine"), warn("b", "meh", "do x"), fail("c", "broken", "do y")})
	if !failed {
		t.Error("a FAIL line must make Write report failure")
	}
	want := "OK    a                      fine\nWARN  b                      meh\n      fix: do x\nFAIL  c                      broken\n      fix: do y\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Error(diff)
	}
	if Write(&bytes.Buffer{}, []Result{ok("a", ""), warn("b", "", "")}) {
		t.Error("WARN alone must not fail")
	}
}

// The report for this very machine: every check runs and says something.
func TestRunOnThisHost(t *testing.T) {
	cfg := config.Default()
	cfg.Root = t.TempDir()
	cfg.GRPC.Socket = filepath.Join(cfg.Root, "run", "cradle.sock")
	cfg.Runtime.Handlers = map[string]config.Handler{"runc": {Kind: config.KindOCI, Binary: "runc"}, "none": {Kind: config.KindOCI, Binary: "no-such-runtime-binary"}}
	res := Run(context.Background(), FactsOf(cfg))
	names := map[string]Result{}
	for _, r := range res {
		if r.Detail == "" {
			t.Errorf("%s has no detail", r.Name)
		}
		names[r.Name] = r
	}
	for _, n := range []string{"namespaces", "overlayfs", "seccomp", "cgroups", "hugetlb", "runtime runc", "conmon", "qemu",
		"guest kernel", "kvm", "virtiofsd", "bridge", "nftables", "cni", "socket", "disk"} {
		if _, ok := names[n]; !ok {
			t.Errorf("no %q line", n)
		}
	}
	if r := names["runtime none"]; r.Status != Fail || !strings.Contains(r.Fix, "apt-get install") {
		t.Errorf("missing runtime: %+v", r)
	}
	layout, err := CgroupLayout("/sys")
	if err != nil || (layout != LayoutV1 && layout != LayoutHybrid && layout != LayoutV2) {
		t.Errorf("CgroupLayout = %q, %v", layout, err)
	}
}

func TestProbeKVMMissingDevice(t *testing.T) {
	if err := vmbox.ProbeKVM(filepath.Join(t.TempDir(), "kvm")); err == nil {
		t.Error("probe of a missing device succeeded")
	}
	if r := checkKVM(Facts{DevKVM: filepath.Join(t.TempDir(), "kvm"), SysRoot: "/sys"}); r.Status != Warn || !strings.Contains(r.Detail, "TCG") {
		t.Errorf("checkKVM without a device = %+v", r)
	}
}
