package vmbox

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/testutil"
)

// requireDebianKernel needs Debian's kernel, unpacked by make deps-vm or
// installed.
func requireDebianKernel(t testing.TB) string {
	t.Helper()
	k, err := DistroKernel(KernelRoots...)
	if err != nil {
		testutil.Unmet(t, "needs a guest kernel (make deps-vm): "+err.Error())
	}
	return k
}

// requireMinimalKernel needs the minimal guest kernel make guest-kernel
// builds. It skips even under CRADLE_TEST_STRICT: make check does not build
// that kernel (yet), so CI does not have it.
func requireMinimalKernel(t testing.TB) string {
	t.Helper()
	k, err := MinimalKernel(KernelRoots...)
	if err != nil {
		t.Skip("needs the minimal guest kernel (make guest-kernel; not a prerequisite of make check): " + err.Error())
	}
	return k
}

func TestPrepareKernelDebian(t *testing.T) {
	src := requireDebianKernel(t)
	cache := t.TempDir()
	start := time.Now()
	k, err := PrepareKernel(context.Background(), cache, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prepared %s in %v: %+v", src, time.Since(start), k)
	if !k.PVH || k.Fallback != "" {
		t.Fatalf("Debian's kernel has a PVH vmlinux, got %+v", k)
	}
	if want := filepath.Base(src)[len("vmlinuz-"):]; k.Release != want {
		t.Errorf("release %q, want %q", k.Release, want)
	}
	// Cached: the second call reads nothing but the source and the entry.
	start = time.Now()
	k2, err := PrepareKernel(context.Background(), cache, src)
	if err != nil || k2 != k {
		t.Fatalf("cached = %+v, %v; want %+v", k2, err, k)
	}
	t.Logf("cached in %v", time.Since(start))
}

// The pure-Go xz+BCJ decoder agrees with xz(1) byte for byte.
func TestExtractMatchesXZ(t *testing.T) {
	src := requireDebianKernel(t)
	xz := testutil.RequireBinary(t, "xz")
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseSetupHeader(raw)
	if err != nil {
		t.Fatal(err)
	}
	payload := raw[h.payloadStart : h.payloadStart+h.payloadLen]
	if !bytes.HasPrefix(payload, []byte("\xfd7zXZ\x00")) {
		t.Skip("this kernel's payload is not xz")
	}
	var buf bytes.Buffer
	if _, err := extractVmlinux(raw, &buf); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	cmd := exec.Command(xz, "-dc", "--single-stream")
	cmd.Stdin = bytes.NewReader(payload)
	want, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz -dc: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("vmlinux differs from xz -dc (%d vs %d bytes)", len(got), len(want))
	}
}

func TestPrepareKernelFallsBack(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "bzImage")
	if err := os.WriteFile(src, bytes.Repeat([]byte{0x90}, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := PrepareKernel(context.Background(), filepath.Join(dir, "cache"), src)
	if err != nil {
		t.Fatal(err)
	}
	if k.PVH || k.Path != src || k.Fallback == "" {
		t.Fatalf("got %+v, want a fallback to the source", k)
	}
	k2, err := PrepareKernel(context.Background(), filepath.Join(dir, "cache"), src)
	if err != nil || k2 != k {
		t.Fatalf("cached fallback = %+v, %v", k2, err)
	}
}

func TestCompareReleases(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"6.1.0-56-amd64", "6.1.0-9-amd64", 1},
		{"6.1.0-9-amd64", "6.12.0-1-amd64", -1},
		{"6.1.0-56-amd64", "6.1.0-56-amd64", 0},
		{"6.1.0-56-cloud-amd64", "6.1.0-56-amd64", 1},
	} {
		if got := compareReleases(tt.a, tt.b); got != tt.want {
			t.Errorf("compareReleases(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestHasNote(t *testing.T) {
	note := func(name string, typ uint32, desc []byte) []byte {
		var b bytes.Buffer
		n := append([]byte(name), 0)
		le := func(v uint32) { b.Write([]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}) }
		le(uint32(len(n)))
		le(uint32(len(desc)))
		le(typ)
		b.Write(n)
		b.Write(make([]byte, (4-len(n)%4)%4))
		b.Write(desc)
		b.Write(make([]byte, (4-len(desc)%4)%4))
		return b.Bytes()
	}
	notes := append(note("GNU", 3, []byte{1, 2, 3}), note("Xen", xenElfnotePhys32Entry, []byte{0, 0, 0, 1})...)
	if !hasNote(notes, "Xen", xenElfnotePhys32Entry) {
		t.Error("PVH note not found")
	}
	if hasNote(notes[:len(notes)-20], "Xen", xenElfnotePhys32Entry) {
		t.Error("found a note in truncated data")
	}
	if hasNote(note("Xen", 5, nil), "Xen", xenElfnotePhys32Entry) {
		t.Error("wrong type matched")
	}
}

// DefaultKernel takes the first root that has a kernel, the newest there;
// ModulesDir finds an unpacked package's modules beside its kernel.
func TestDefaultKernelRootsAndModules(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, p := range []string{"boot/vmlinuz-6.1.0-9-amd64", "boot/vmlinuz-6.1.0-56-amd64", "lib/modules/6.1.0-56-amd64/kernel/x.ko"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(b, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(b, p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k, err := DefaultKernel(a, b)
	if want := filepath.Join(b, "boot/vmlinuz-6.1.0-56-amd64"); err != nil || k != want {
		t.Fatalf("DefaultKernel = %q, %v; want %q", k, err, want)
	}
	if got, want := ModulesDir(k, "6.1.0-56-amd64"), filepath.Join(b, "lib/modules/6.1.0-56-amd64"); got != want {
		t.Errorf("ModulesDir = %q, want %q", got, want)
	}
	if got := ModulesDir("/boot/vmlinuz-0.0-none", "0.0-none"); got != "/lib/modules/0.0-none" {
		t.Errorf("ModulesDir of a host kernel = %q", got)
	}
	if _, err := DefaultKernel(a); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("no kernel: %v", err)
	}
}

// TestBCJWriterIgnoresHowTheStreamIsCut: the streaming x86 BCJ decoder
// gives the same bytes whether the stream comes in one write or in pieces
// of any size (instructions straddling the cuts included).
func TestBCJWriterIgnoresHowTheStreamIsCut(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	in := make([]byte, 1<<18)
	for i := range in {
		switch rng.IntN(8) {
		case 0:
			in[i] = 0xe8
		case 1:
			in[i] = 0xe9
		case 2:
			in[i] = 0x00
		case 3:
			in[i] = 0xff
		default:
			in[i] = byte(rng.IntN(256))
		}
	}
	decode := func(cut func() int) []byte {
		var out bytes.Buffer
		w := &bcjX86Writer{w: &out, prevPos: ^uint(0)}
		for rest := in; len(rest) > 0; {
			n := min(cut(), len(rest))
			if _, err := w.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	whole := decode(func() int { return len(in) })
	if len(whole) != len(in) || bytes.Equal(whole, in) {
		t.Fatalf("one write: %d bytes, changed %v", len(whole), !bytes.Equal(whole, in))
	}
	for _, c := range []struct {
		name string
		cut  func() int
	}{
		{"1 byte", func() int { return 1 }},
		{"3 bytes", func() int { return 3 }},
		{"5 bytes", func() int { return 5 }},
		{"random", func() int { return 1 + rng.IntN(9000) }},
	} {
		if got := decode(c.cut); !bytes.Equal(got, whole) {
			t.Errorf("%s writes: output differs from one write", c.name)
		}
	}
}

// BenchmarkPrepareKernelCold: a cold PrepareKernel of Debian's kernel (an
// empty cache: decompress, check, write): its time, the process's peak RSS
// (VmHWM, which a benchmark run of this alone makes meaningful) and the Go
// memory the daemon still holds from the OS afterwards (heap and stacks not
// returned).
func BenchmarkPrepareKernelCold(b *testing.B) {
	src := requireDebianKernel(b)
	for b.Loop() {
		if _, err := PrepareKernel(context.Background(), b.TempDir(), src); err != nil {
			b.Fatal(err)
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapSys-ms.HeapReleased)/(1<<20), "MiB-held-after")
	if st, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
				b.ReportMetric(float64(kb)/1024, "MiB-peak-RSS")
			}
		}
	}
}

// A payload that inflates past maxKernelBytes is refused, not written out.
func TestDecompressPayloadBounded(t *testing.T) {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zero := make([]byte, 1<<20)
	for i := 0; i < maxKernelBytes>>20+1; i++ {
		if _, err := zw.Write(zero); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	var n countingWriter
	n.w = io.Discard
	err := decompressPayload(z.Bytes(), &n)
	if !errors.Is(err, errTooLarge) {
		t.Fatalf("err = %v, want errTooLarge", err)
	}
	if n.n > maxKernelBytes {
		t.Errorf("%d bytes written, beyond the limit", n.n)
	}
}

// writeFiles creates each of files (path → content) under root.
func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The minimal kernel (make guest-kernel) is preferred over Debian's when
// present, in any root; Debian's remains the fallback; a kernel whose
// configuration beside it has no modules gets no modules directory, so
// the initramfs holds none.
func TestKernelSelection(t *testing.T) {
	debian := map[string]string{
		"boot/vmlinuz-6.1.0-56-amd64":            "",
		"boot/config-6.1.0-56-amd64":             "CONFIG_MODULES=y\n",
		"lib/modules/6.1.0-56-amd64/kernel/x.ko": "",
		"lib/modules/6.1.0-56-amd64/modules.dep": "kernel/x.ko:\n",
	}
	minimal := map[string]string{
		"boot/vmlinux-cradle-6.1.9":   "",
		"boot/config-cradle-6.1.9":    "CONFIG_64BIT=y\n# CONFIG_MODULES is not set\n",
		"boot/vmlinux-cradle-6.1.192": "",
		"boot/config-cradle-6.1.192":  "CONFIG_64BIT=y\n# CONFIG_MODULES is not set\n",
	}
	for _, tt := range []struct {
		name        string
		roots       []map[string]string
		want        string // root index and path
		wantModules bool
	}{
		{"debian only", []map[string]string{debian}, "0/boot/vmlinuz-6.1.0-56-amd64", true},
		{"minimal beside debian", []map[string]string{merge(debian, minimal)}, "0/boot/vmlinux-cradle-6.1.192", false},
		{"minimal in a later root", []map[string]string{debian, minimal}, "1/boot/vmlinux-cradle-6.1.192", false},
		{"minimal only", []map[string]string{nil, minimal}, "1/boot/vmlinux-cradle-6.1.192", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var roots []string
			for _, files := range tt.roots {
				r := t.TempDir()
				writeFiles(t, r, files)
				roots = append(roots, r)
			}
			i, p, _ := strings.Cut(tt.want, "/")
			n, _ := strconv.Atoi(i)
			want := filepath.Join(roots[n], p)
			k, err := DefaultKernel(roots...)
			if err != nil || k != want {
				t.Fatalf("DefaultKernel = %q, %v; want %q", k, err, want)
			}
			md := ModulesDir(k, "6.1.0-56-amd64")
			if (md != "") != tt.wantModules {
				t.Errorf("ModulesDir(%s) = %q; want modules: %v", k, md, tt.wantModules)
			}
			if d, err := DistroKernel(roots...); err != nil || filepath.Base(d) != "vmlinuz-6.1.0-56-amd64" {
				if tt.name != "minimal only" {
					t.Errorf("DistroKernel = %q, %v", d, err)
				} else if !errors.Is(err, os.ErrNotExist) {
					t.Errorf("DistroKernel with none: %v", err)
				}
			}
		})
	}
	if _, err := MinimalKernel(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("MinimalKernel with none: %v", err)
	}
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func TestKernelConfigPath(t *testing.T) {
	for in, want := range map[string]string{
		"/g/boot/vmlinux-cradle-6.1.192": "/g/boot/config-cradle-6.1.192",
		"/g/boot/vmlinuz-6.1.0-57-amd64": "/g/boot/config-6.1.0-57-amd64",
		"/srv/kernels/bzImage":           "/srv/kernels/bzImage.config",
	} {
		if got := KernelConfigPath(in); got != want {
			t.Errorf("KernelConfigPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// An initramfs for a kernel with no modules directory holds none.
func TestInitramfsWithoutModules(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "agent")
	writeFiles(t, dir, map[string]string{"agent": "#!/bin/true\n"})
	out, err := BuildInitramfs(context.Background(), filepath.Join(dir, "cache"), InitramfsSpec{
		Agent: agent, ModulesDir: "", Modules: GuestModules(),
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("modules.dep")) || bytes.Contains(b, []byte(".ko")) {
		t.Error("the initramfs of a kernel without modules holds modules")
	}
}

func TestBannerRelease(t *testing.T) {
	for in, want := range map[string]string{
		"\x7fELF...Linux version 6.1.192 (root@h) (gcc) #1 SMP\n": "6.1.192",
		"Linux version 6.1.0-57-amd64\x00":                        "6.1.0-57-amd64",
		"no banner":                                               "",
	} {
		if got := bannerRelease([]byte(in)); got != want {
			t.Errorf("bannerRelease(%q) = %q, want %q", in, got, want)
		}
	}
}

// Only a kernel with virtio_mmio built in and taking devices from its
// command line gets them there (and no ACPI).
func TestCmdlineDevices(t *testing.T) {
	dir := t.TempDir()
	for name, tt := range map[string]struct {
		config string
		want   bool
	}{
		"minimal": {"CONFIG_VIRTIO_MMIO=y\nCONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\n# CONFIG_MODULES is not set\n", true},
		"debian":  {"CONFIG_VIRTIO_MMIO=m\n# CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is not set\nCONFIG_MODULES=y\n", false},
		"modular": {"CONFIG_VIRTIO_MMIO=m\nCONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\n", false},
	} {
		p := filepath.Join(dir, name)
		writeFiles(t, dir, map[string]string{name: tt.config})
		if got := cmdlineDevices(p); got != tt.want {
			t.Errorf("%s: cmdlineDevices = %v, want %v", name, got, tt.want)
		}
	}
	if cmdlineDevices(filepath.Join(dir, "absent")) {
		t.Error("a kernel without a configuration gets its devices on the command line")
	}
}

func TestHas9P(t *testing.T) {
	dir := t.TempDir()
	boot := filepath.Join(dir, "boot")
	mods := filepath.Join(dir, "lib", "modules", "6.1.0-test")
	for _, d := range []string{boot, mods} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	minimal := filepath.Join(boot, "vmlinux-cradle-6.1")
	write(minimal, "")
	write(filepath.Join(boot, "config-cradle-6.1"), "# CONFIG_MODULES is not set\nCONFIG_9P_FS=y\nCONFIG_NET_9P_VIRTIO=y\n")
	if !Has9P(minimal, "6.1") {
		t.Error("a kernel configured with 9p built in: Has9P false")
	}
	write(filepath.Join(boot, "config-cradle-6.1"), "# CONFIG_MODULES is not set\n# CONFIG_9P_FS is not set\n")
	if Has9P(minimal, "6.1") {
		t.Error("a kernel configured without 9p: Has9P true")
	}
	debian := filepath.Join(boot, "vmlinuz-6.1.0-test")
	write(debian, "")
	write(filepath.Join(mods, "modules.dep"), "kernel/fs/fuse/fuse.ko:\n")
	if Has9P(debian, "6.1.0-test") {
		t.Error("modules without 9p: Has9P true")
	}
	write(filepath.Join(mods, "modules.dep"), "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko\nkernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko\n")
	if !Has9P(debian, "6.1.0-test") {
		t.Error("modules with 9p and 9pnet_virtio: Has9P false")
	}
}
