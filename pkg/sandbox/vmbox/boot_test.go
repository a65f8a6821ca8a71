package vmbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/cradle-runtime/cradle/pkg/testutil"
)

// bootFixture is what a real boot needs: QEMU, a prepared guest kernel,
// and an initramfs around a freshly built guest agent (with the kernel's
// modules, when it takes any).
type bootFixture struct {
	qemu, kernel, initramfs, release string
	tscKHz                           uint64
	cmdlineDevices                   bool
}

// bootKernels are the guest kernels the boot tests and benchmarks run:
// the minimal one (make guest-kernel) and Debian's (make deps-vm).
var bootKernels = []struct {
	name    string
	require func(testing.TB) string
}{
	{"minimal", requireMinimalKernel},
	{"debian", requireDebianKernel},
}

func newBootFixture(t testing.TB, src string, gzip bool) bootFixture {
	t.Helper()
	qemu := testutil.RequireBinary(t, "qemu-system-x86_64")
	gobin := testutil.RequireBinary(t, "go")
	cache := t.TempDir()
	ctx := context.Background()

	start := time.Now()
	k, err := PrepareKernel(ctx, filepath.Join(cache, "kernels"), src)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel %s (release %q) prepared in %v (pvh=%v, devices on the command line=%v)",
		src, k.Release, time.Since(start), k.PVH, k.CmdlineDevices)

	// The guest agent as make build makes it: cmd/shim with the guest tag.
	agent := filepath.Join(cache, "cradle-agent")
	build := exec.Command(gobin, "build", "-trimpath", "-tags", "guest", "-ldflags", "-s -w", "-o", agent, "../../../cmd/shim")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	start = time.Now()
	initrd, err := BuildInitramfs(ctx, filepath.Join(cache, "initramfs"), InitramfsSpec{
		Agent: agent, ModulesDir: ModulesDir(src, k.Release), Modules: GuestModules(), Gzip: gzip,
	})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(initrd)
	t.Logf("initramfs (gzip=%v) built in %v: %d bytes", gzip, time.Since(start), st.Size())
	khz, src2, err := HostTSCKHz()
	if err != nil {
		t.Logf("no host TSC rate: %v", err)
	}
	t.Logf("host TSC %d kHz (%s)", khz, src2)
	return bootFixture{qemu: qemu, kernel: k.Path, initramfs: initrd, release: k.Release, tscKHz: khz,
		cmdlineDevices: k.CmdlineDevices}
}

func (f bootFixture) spec(dir string) VMSpec {
	s := VMSpec{
		Name: "cradle-test", QEMU: f.qemu, Kernel: f.kernel, Initramfs: f.initramfs,
		VCPUs: 1, MemoryMiB: 256, Accel: config.AccelTCG, TSCKHz: f.tscKHz, Dir: dir,
		CmdlineDevices: f.cmdlineDevices,
	}
	if os.Getenv("CRADLE_VM_CONSOLE") == "1" {
		s.ConsoleLog = filepath.Join(dir, "console.log")
	}
	return s
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// pssKiB reads a process's proportional set size.
func pssKiB(pid int) (int, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, errors.New("no Pss in smaps_rollup")
}

// guestMemUsedMiB is the guest's memory in use (total less available), as
// its agent reports it.
func guestMemUsedMiB(ctx context.Context, vm *VM) (float64, error) {
	var resp *api.StatsResponse
	err := vm.Agent().Call(ctx, func(s api.AgentService) (err error) {
		resp, err = s.Stats(ctx, &api.StatsRequest{})
		return err
	})
	if err != nil {
		return 0, err
	}
	return float64(resp.GetMemoryTotalBytes()-resp.GetMemoryAvailableBytes()) / (1 << 20), nil
}

// TestBootAndHealth boots each guest kernel (the minimal one and Debian's)
// under TCG with cradle's agent as init, asks it for Health over
// virtio-serial, shuts it down, and checks nothing is left behind.
func TestBootAndHealth(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM (seconds of TCG)")
	}
	for _, bk := range bootKernels {
		t.Run(bk.name, func(t *testing.T) { testBootAndHealth(t, newBootFixture(t, bk.require(t), false)) })
	}
}

func testBootAndHealth(t *testing.T, f bootFixture) {
	dir := t.TempDir()
	spec := f.spec(dir)
	spec.ConsoleLog = filepath.Join(dir, "console.log")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	start := time.Now()
	vm, err := Start(ctx, spec, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	h, err := vm.WaitReady(ctx)
	if err != nil {
		_ = vm.Stop(ctx)
		if b, rerr := os.ReadFile(spec.ConsoleLog); rerr == nil {
			t.Logf("console:\n%s", b)
		}
		t.Fatal(err)
	}
	boot := time.Since(start)
	pss, _ := pssKiB(vm.PID())
	used, err := guestMemUsedMiB(ctx, vm)
	if err != nil {
		t.Errorf("guest stats: %v", err)
	}
	t.Logf("agent healthy after %v: release %q, version %q, guest uptime %v; QEMU PSS %d KiB, guest memory used %.1f MiB",
		boot, h.KernelRelease, h.KernelVersion, time.Duration(h.UptimeNs), pss, used)
	if h.KernelRelease != f.release {
		t.Errorf("guest kernel %q, want the prepared kernel's %q", h.KernelRelease, f.release)
	}
	if h.UptimeNs <= 0 || time.Duration(h.UptimeNs) > boot+time.Second {
		t.Errorf("guest uptime %v after a %v boot", time.Duration(h.UptimeNs), boot)
	}
	// A guest whose local APIC timer is off has no tick: it boots on
	// stray interrupts, and a sleep can last half a minute.
	if b, err := os.ReadFile(spec.ConsoleLog); err != nil {
		t.Error(err)
	} else if i := bytes.Index(b, []byte("APIC timer disabled")); i >= 0 {
		t.Errorf("the guest has no timer tick: %q", b[bytes.LastIndexByte(b[:i], '\n')+1:i+bytes.IndexByte(b[i:], '\n')])
	}

	pid := vm.PID()
	if err := vm.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("qemu %d still exists after Stop: %v", pid, err)
	}
	for _, p := range []string{spec.AgentSocket(), spec.QMPSocket(), spec.PIDFile()} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind", p)
		}
	}
}
