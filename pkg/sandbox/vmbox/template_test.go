package vmbox

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
)

// TestTemplateClones saves a template of each guest kernel and starts two
// clones of it at once: each runs on from the template (no boot: its
// uptime continues the template's), mounts its own 9p share, and takes its
// own hostname and entropy.
func TestTemplateClones(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs (seconds of TCG)")
	}
	for _, bk := range bootKernels {
		t.Run(bk.name, func(t *testing.T) { testTemplateClones(t, newBootFixture(t, bk.require(t), false)) })
	}
}

func testTemplateClones(t *testing.T, f bootFixture) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "template")
	// A pod's spec, as the backend has it: its virtiofs and NIC are not
	// the template's.
	pod := f.spec(t.TempDir())
	pod.VirtioFS, pod.Tap, pod.MAC = true, "tap0", "02:01:02:03:04:05"
	tpl, err := BuildTemplate(ctx, pod, dir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	key, err := TemplateKey(f.spec(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenTemplate(dir, key); err != nil {
		t.Fatalf("OpenTemplate of the template just built: %v", err)
	}
	t.Logf("template: boot %v, RAM %d MiB", tpl.Meta.BootTook, tpl.Meta.RAMBytes>>20)

	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			startClone(ctx, t, f, tpl, i)
		}()
	}
	wg.Wait()
}

func startClone(ctx context.Context, t *testing.T, f bootFixture, tpl Template, i int) {
	spec := f.spec(t.TempDir())
	spec.Shared9P = t.TempDir()
	if err := os.WriteFile(filepath.Join(spec.Shared9P, "marker"), []byte("x"), 0o644); err != nil {
		t.Error(err)
		return
	}
	start := time.Now()
	vm, err := StartClone(ctx, spec, tpl, testLogger(t))
	if err != nil {
		t.Error(err)
		return
	}
	defer func() { _ = vm.Stop(ctx) }()
	h, err := vm.WaitReady(ctx)
	if err != nil {
		t.Error(err)
		return
	}
	took := time.Since(start)
	if up := time.Duration(h.UptimeNs); up < tpl.Meta.BootTook/4 {
		t.Errorf("clone %d: guest uptime %v: it booted instead of running on from the template (booted in %v)", i, up, tpl.Meta.BootTook)
	}
	entropy := make([]byte, 32)
	_, _ = rand.Read(entropy)
	req := &api.SetupSandboxRequest{Hostname: "clone", Entropy: entropy, HostTimeUnixNs: time.Now().UnixNano(),
		SharedTag: api.SharedTag, SharedFs: "9p"}
	err = vm.Agent().Call(ctx, func(s api.AgentService) error {
		_, err := s.SetupSandbox(ctx, req)
		return err
	})
	if err != nil {
		t.Errorf("clone %d: SetupSandbox: %v", i, err)
	}
	t.Logf("clone %d: agent healthy %v after start, guest uptime %v; QEMU PSS %d KiB", i, took, time.Duration(h.UptimeNs), mustPSS(vm.PID()))
}

func mustPSS(pid int) int {
	p, _ := pssKiB(pid)
	return p
}

// TestOpenTemplateRefuses: a template of another key, a damaged device
// state and a short RAM file are FailedPrecondition, a missing one
// NotFound, so that the backend boots cold and rebuilds it.
func TestOpenTemplateRefuses(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenTemplate(dir, "k"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("no template: %v, want NotFound", err)
	}
	state := []byte("QEVM device state")
	if err := os.WriteFile(filepath.Join(dir, templateStateFile), state, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, templateRAMFile), make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	sum, _ := fileSHA256(filepath.Join(dir, templateStateFile))
	meta := TemplateMeta{Key: "k", RAMBytes: 4096, StateSHA256: sum}
	if err := writeTemplateMeta(dir, meta); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenTemplate(dir, "k"); err != nil {
		t.Fatalf("a whole template: %v", err)
	}
	for _, c := range []struct {
		name  string
		key   string
		spoil func() error
	}{
		{"stale", "other", func() error { return nil }},
		{"damaged state", "k", func() error {
			return os.WriteFile(filepath.Join(dir, templateStateFile), []byte("QEVM device statf"), 0o600)
		}},
		{"short RAM", "k", func() error { return os.Truncate(filepath.Join(dir, templateRAMFile), 100) }},
		{"bad metadata", "k", func() error { return os.WriteFile(filepath.Join(dir, templateMetaFile), []byte("{"), 0o600) }},
	} {
		if err := c.spoil(); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenTemplate(dir, c.key); !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Errorf("%s: %v, want FailedPrecondition", c.name, err)
		}
	}
}

// TestKillTemplateBuilds: the template VM a crashed daemon was building
// (its RAM file in a .new directory under the templates directory) is
// killed when the backend is made again; other processes are left.
func TestKillTemplateBuilds(t *testing.T) {
	dir := t.TempDir()
	start := func(arg string) *exec.Cmd {
		// sh waits for its sleep: a process group of its own, killed
		// whole at the end, leaves no sleep behind.
		cmd := exec.Command("sh", "-c", "sleep 1000; :", arg)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
		return cmd
	}
	build := start("mem-path=" + dir + "/0123456789abcdef.new/ram,share=on")
	other := start("mem-path=" + t.TempDir() + "/0123456789abcdef.new/ram,share=on")
	clone := start("mem-path=" + dir + "/0123456789abcdef/ram,share=off")
	newTemplates(dir)
	done := make(chan error, 1)
	go func() { done <- build.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the crashed daemon's template build still runs")
	}
	for _, c := range []*exec.Cmd{other, clone} {
		if err := c.Process.Signal(syscall.Signal(0)); err != nil {
			t.Errorf("%v was killed: %v", c.Args, err)
		}
	}
}

// TestTemplateKey: what a pod's VM is made from changes the key; its own
// parts (directory, network, share) and the TSC rate measured at each
// start do not.
func TestTemplateKey(t *testing.T) {
	qemu := filepath.Join(t.TempDir(), "qemu")
	if err := os.WriteFile(qemu, []byte("qemu"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := VMSpec{QEMU: qemu, Kernel: "/k/vmlinux", Initramfs: "/i/a.cpio", VCPUs: 1, MemoryMiB: 256, Accel: "tcg", TSCKHz: 2694860, Dir: "/p/1"}
	key := func(s VMSpec) string {
		k, err := TemplateKey(s)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	want := key(base)
	same := base
	same.TSCKHz, same.Dir, same.Tap, same.MAC, same.NetNS, same.VirtioFS, same.Shared9P = 2694871, "/p/2", "tap0", "02:00:00:00:00:09", "/run/netns/x", true, "/p/2/shared"
	if got := key(same); got != want {
		t.Error("a pod's own parts or the TSC rate changed the template key")
	}
	for name, change := range map[string]func(*VMSpec){
		"kernel":    func(s *VMSpec) { s.Kernel = "/k/other" },
		"initramfs": func(s *VMSpec) { s.Initramfs = "/i/b.cpio" },
		"memory":    func(s *VMSpec) { s.MemoryMiB = 512 },
		"vcpus":     func(s *VMSpec) { s.VCPUs = 2 },
	} {
		s := base
		change(&s)
		if key(s) == want {
			t.Errorf("another %s, the same template key", name)
		}
	}
}

// TestPruneTemplates: at start a handler keeps the template of its
// default shape and removes the rest: stale templates and unfinished
// builds.
func TestPruneTemplates(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"0123456789abcdef", "fedcba9876543210", "fedcba9876543210.new"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	b := NewBackend(testLogger(t), Machine{Templates: dir}, nil)
	b.templates.prune(context.Background(), "0123456789abcdef", b)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "0123456789abcdef" {
		t.Errorf("after pruning: %v, want only the kept template", entries)
	}
}
