package vmbox

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Kernel is a guest kernel ready for QEMU's -kernel.
//
// An uncompressed vmlinux with a PVH entry point boots several times faster
// than the bzImage it comes from under TCG (about 1.8 s against 8 s here):
// QEMU jumps straight to the 32-bit entry, and the guest does not run the
// decompressor in emulation. PrepareKernel extracts it once per bzImage.
type Kernel struct {
	Path    string // what -kernel loads: the cached vmlinux, or the bzImage itself
	Source  string // the kernel file it was prepared from
	Release string // uname -r of the guest, from the bzImage header ("" if unknown)
	PVH     bool   // Path is an ELF with a PVH entry note
	// Fallback says why Path is the bzImage ("" when it is the vmlinux).
	Fallback string
	// CmdlineDevices: the kernel takes its virtio devices from its command
	// line (VMSpec.CmdlineDevices), as its configuration beside Source says.
	CmdlineDevices bool
}

const (
	vmlinuxName  = "vmlinux"
	fallbackName = "fallback" // the cache entry of a bzImage with no usable vmlinux
	releaseName  = "release"
)

// PrepareKernel returns the fastest-booting form of the kernel at src:
// the PVH vmlinux inside it, cached under cacheDir/<sha256 of src>/, or src
// itself (with the reason) when src has none. A cached entry is reused; a
// new one is written atomically, so concurrent callers are safe.
func PrepareKernel(ctx context.Context, cacheDir, src string) (Kernel, error) {
	raw, err := os.ReadFile(src)
	if err != nil {
		return Kernel{}, fmt.Errorf("read kernel: %w", err)
	}
	sum := sha256.Sum256(raw)
	dir := filepath.Join(cacheDir, hex.EncodeToString(sum[:]))
	k := Kernel{Path: src, Source: src, CmdlineDevices: cmdlineDevices(KernelConfigPath(src))}
	if rel, err := os.ReadFile(filepath.Join(dir, releaseName)); err == nil {
		k.Release = string(rel)
		if _, err := os.Stat(filepath.Join(dir, vmlinuxName)); err == nil {
			k.Path, k.PVH = filepath.Join(dir, vmlinuxName), true
			return k, nil
		}
		if why, err := os.ReadFile(filepath.Join(dir, fallbackName)); err == nil {
			k.Fallback = string(why)
			return k, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return Kernel{}, err
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Kernel{}, fmt.Errorf("kernel cache: %w", err)
	}
	release, err := writeVmlinux(filepath.Join(dir, vmlinuxName), raw)
	// The decompressor's buffers (its dictionary, up to tens of MiB) are
	// garbage now: give them back to the OS at once rather than leave the
	// daemon holding them until the scavenger gets round to it.
	debug.FreeOSMemory()
	k.Release = release
	if werr := writeFileAtomic(filepath.Join(dir, releaseName), []byte(release), 0o644); werr != nil {
		return Kernel{}, werr
	}
	if err != nil {
		k.Fallback = err.Error()
		return k, writeFileAtomic(filepath.Join(dir, fallbackName), []byte(k.Fallback), 0o644)
	}
	k.Path, k.PVH = filepath.Join(dir, vmlinuxName), true
	return k, nil
}

// writeVmlinux extracts the vmlinux of the kernel image raw into path,
// streamed through a temporary file that becomes path only once it is
// whole and has the PVH entry note (so the decompressed kernel, 60 MiB and
// more, is never in memory). It returns the release from the image's
// header; an error says why there is no usable vmlinux (nothing at path).
func writeVmlinux(path string, raw []byte) (release string, err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			_ = f.Close()
		}
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	release, err = extractVmlinux(raw, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = checkPVH(f)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	f = nil
	if err == nil {
		err = os.Rename(tmp, path)
	}
	return release, err
}

// extractVmlinux finds the compressed payload of a bzImage through its
// setup header (boot protocol 2.08+: payload_offset, payload_length) and
// decompresses it into w. An ELF is copied as it is, its release read from
// its banner. A bzImage's release comes from the header's kernel_version
// string.
func extractVmlinux(raw []byte, w io.Writer) (release string, err error) {
	if bytes.HasPrefix(raw, []byte(elf.ELFMAG)) {
		_, err := w.Write(raw)
		return bannerRelease(raw), err
	}
	h, err := parseSetupHeader(raw)
	if err != nil {
		return "", err
	}
	payload := raw[h.payloadStart : h.payloadStart+h.payloadLen]
	if err := decompressPayload(payload, w); err != nil {
		return h.release, err
	}
	return h.release, nil
}

type setupHeader struct {
	payloadStart, payloadLen int
	release                  string
}

// parseSetupHeader reads the x86 boot protocol header (Documentation/arch/x86/boot.rst).
func parseSetupHeader(raw []byte) (setupHeader, error) {
	if len(raw) < 0x250 || string(raw[0x202:0x206]) != "HdrS" {
		return setupHeader{}, errors.New("not a bzImage (no HdrS setup header)")
	}
	if v := binary.LittleEndian.Uint16(raw[0x206:]); v < 0x208 {
		return setupHeader{}, fmt.Errorf("boot protocol %#x has no payload fields (2.08+ needed)", v)
	}
	setupSects := int(raw[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	h := setupHeader{
		payloadStart: (setupSects+1)*512 + int(binary.LittleEndian.Uint32(raw[0x248:])),
		payloadLen:   int(binary.LittleEndian.Uint32(raw[0x24c:])),
	}
	if h.payloadLen == 0 || h.payloadStart+h.payloadLen > len(raw) {
		return setupHeader{}, errors.New("bzImage payload out of bounds")
	}
	if off := int(binary.LittleEndian.Uint16(raw[0x20e:])); off != 0 && off+0x200 < len(raw) {
		s := raw[off+0x200:]
		if i := bytes.IndexByte(s, 0); i > 0 {
			h.release, _, _ = strings.Cut(string(s[:i]), " ")
		}
	}
	return h, nil
}

// maxKernelBytes bounds a decompressed kernel (Debian's vmlinux is about
// 60 MiB): a payload that inflates beyond it is refused, not written out.
const maxKernelBytes = 512 << 20

// decompressPayload decodes the formats Debian's and most distributions'
// kernels use. xz and zstd payloads end with the 4-byte uncompressed size
// the kernel build appends (size_append), checked here.
func decompressPayload(p []byte, w io.Writer) error {
	trimmed := func() ([]byte, uint32) {
		if len(p) < 4 {
			return p, 0
		}
		return p[:len(p)-4], binary.LittleEndian.Uint32(p[len(p)-4:])
	}
	out := &countingWriter{w: w, limit: maxKernelBytes}
	var want uint32
	var err error
	switch {
	case bytes.HasPrefix(p, []byte{0x1f, 0x8b}):
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(p)); err == nil {
			zr.Multistream(false)
			_, err = io.Copy(out, zr) //nolint:gosec // G110: out stops at maxKernelBytes
		}
	case bytes.HasPrefix(p, []byte("\xfd7zXZ\x00")):
		var s []byte
		s, want = trimmed()
		err = unxzKernel(s, out)
	case bytes.HasPrefix(p, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		var s []byte
		s, want = trimmed()
		var d *zstd.Decoder
		if d, err = zstd.NewReader(bytes.NewReader(s), zstd.WithDecoderMaxMemory(1<<30), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true)); err == nil {
			_, err = io.Copy(out, d)
			d.Close()
		}
	default:
		return fmt.Errorf("kernel payload compression %x… is not supported (gzip, xz, zstd)", p[:min(len(p), 4)])
	}
	if err != nil {
		return fmt.Errorf("decompress kernel: %w", err)
	}
	if want != 0 && uint32(out.n) != want {
		return fmt.Errorf("decompressed kernel is %d bytes, the image says %d", out.n, want)
	}
	return nil
}

// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit PVH entry
// point QEMU's -kernel loader looks for in an ELF.
const xenElfnotePhys32Entry = 18

// checkPVH succeeds when vmlinux is an x86-64 ELF carrying the PVH entry note.
func checkPVH(vmlinux io.ReaderAt) error {
	f, err := elf.NewFile(vmlinux)
	if err != nil {
		return fmt.Errorf("vmlinux is not an ELF: %w", err)
	}
	defer func() { _ = f.Close() }()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("vmlinux is for %v, not x86-64", f.Machine)
	}
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(prog.Open())
		if err != nil {
			return fmt.Errorf("vmlinux notes: %w", err)
		}
		if hasNote(notes, "Xen", xenElfnotePhys32Entry) {
			return nil
		}
	}
	return errors.New("vmlinux has no PVH entry note (kernel built without CONFIG_PVH)")
}

// hasNote walks ELF notes (namesz, descsz, type, name, desc; 4-byte aligned).
func hasNote(b []byte, name string, typ uint32) bool {
	align := func(n uint32) int { return int((n + 3) &^ 3) }
	for len(b) >= 12 {
		namesz, descsz := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
		t := binary.LittleEndian.Uint32(b[8:])
		b = b[12:]
		if align(namesz)+align(descsz) > len(b) {
			return false
		}
		n := strings.TrimRight(string(b[:namesz]), "\x00")
		if n == name && t == typ {
			return true
		}
		b = b[align(namesz)+align(descsz):]
	}
	return false
}

// GuestKernelDir is where the guest kernels live, so that VM pods need no
// kernel installed on the host: `make deps-vm` unpacks Debian's kernel
// package there (dpkg-deb -x: boot/vmlinuz-*, lib/modules/*), and `make
// guest-kernel` builds the minimal one (boot/vmlinux-cradle-*, with its
// boot/config-cradle-*).
const GuestKernelDir = "/var/lib/cradle/guest"

// KernelRoots are the trees DefaultKernel looks in: GuestKernelDir, then
// the host's own (/boot, a linux-image package installed on it).
var KernelRoots = []string{GuestKernelDir, "/"}

// Kernel file names under a root's boot directory: the minimal kernel
// make guest-kernel builds for microVMs (an ELF vmlinux, everything built
// in), and a distribution's bzImage (its modules in lib/modules).
const (
	minimalKernelPrefix = "vmlinux-cradle-"
	distroKernelPrefix  = "vmlinuz-"
)

// DefaultKernel is the guest kernel a vm handler runs when its
// configuration names none: the minimal kernel when a root has one
// (MinimalKernel), else the distribution's (DistroKernel).
func DefaultKernel(roots ...string) (string, error) {
	if k, err := MinimalKernel(roots...); err == nil {
		return k, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	return DistroKernel(roots...)
}

// MinimalKernel picks the newest boot/vmlinux-cradle-* (make guest-kernel)
// in the first of roots that has one.
func MinimalKernel(roots ...string) (string, error) {
	k, err := newestKernel(roots, minimalKernelPrefix)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("no minimal guest kernel (make guest-kernel builds it into %s): %w", GuestKernelDir, err)
	}
	return k, err
}

// DistroKernel picks the newest boot/vmlinuz-* by release in the first of
// roots that has one (Debian's linux-image-amd64 when several are there).
func DistroKernel(roots ...string) (string, error) {
	k, err := newestKernel(roots, distroKernelPrefix)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("no guest kernel (make deps-vm unpacks Debian's into %s): %w", GuestKernelDir, err)
	}
	return k, err
}

func newestKernel(roots []string, prefix string) (string, error) {
	for _, root := range roots {
		ms, err := filepath.Glob(filepath.Join(root, "boot", prefix+"*"))
		if err != nil {
			return "", err
		}
		best := ""
		for _, m := range ms {
			if strings.HasPrefix(filepath.Base(m), ".") || strings.HasSuffix(m, ".tmp") {
				continue
			}
			if best == "" || compareReleases(strings.TrimPrefix(filepath.Base(m), prefix),
				strings.TrimPrefix(filepath.Base(best), prefix)) > 0 {
				best = m
			}
		}
		if best != "" {
			return best, nil
		}
	}
	return "", fmt.Errorf("no boot/%s* under %v: %w", prefix, roots, os.ErrNotExist)
}

// KernelConfigPath is where the build configuration of kernel is kept, if
// anywhere: config-<suffix> beside it, as Debian's boot/config-<release>
// sits beside boot/vmlinuz-<release> and make guest-kernel's
// boot/config-cradle-<release> beside boot/vmlinux-cradle-<release>.
func KernelConfigPath(kernel string) string {
	name := filepath.Base(kernel)
	for _, p := range []string{"vmlinux-", "vmlinuz-"} {
		if s, ok := strings.CutPrefix(name, p); ok {
			return filepath.Join(filepath.Dir(kernel), "config-"+s)
		}
	}
	return kernel + ".config"
}

// ModulesDir is where the modules of kernel (a path DefaultKernel gave, or
// any bzImage) of this release are: "" for a kernel whose configuration
// beside it (KernelConfigPath) says it takes no modules (the minimal one:
// everything built in, nothing to load); lib/modules beside its boot
// directory when there (an unpacked package); else the host's /lib/modules.
func ModulesDir(kernel, release string) string {
	if !takesModules(KernelConfigPath(kernel)) {
		return ""
	}
	if filepath.Base(filepath.Dir(kernel)) == "boot" && release != "" {
		d := filepath.Join(filepath.Dir(filepath.Dir(kernel)), "lib", "modules", release)
		if _, err := os.Stat(d); err == nil {
			return d
		}
	}
	return filepath.Join("/lib/modules", release)
}

// takesModules reads a kernel configuration: false only when it is there
// and says "# CONFIG_MODULES is not set". A kernel with no configuration
// beside it is taken to need its modules (a distribution's does).
func takesModules(configPath string) bool {
	cfg, err := readKernelConfig(configPath)
	return err != nil || cfg["CONFIG_MODULES"] != "n"
}

// cmdlineDevices reads a kernel configuration: true when virtio_mmio is
// built in and takes devices from the command line (make guest-kernel's;
// Debian's has it as a module without CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES).
func cmdlineDevices(configPath string) bool {
	cfg, err := readKernelConfig(configPath)
	return err == nil && cfg["CONFIG_VIRTIO_MMIO"] == "y" && cfg["CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES"] == "y"
}

// readKernelConfig parses a kernel .config: each option's value, "n" for
// one that "is not set".
func readKernelConfig(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if k, v, ok := strings.Cut(l, "="); ok && strings.HasPrefix(k, "CONFIG_") {
			cfg[k] = v
		} else if k, ok := strings.CutPrefix(l, "# "); ok {
			if k, ok := strings.CutSuffix(k, " is not set"); ok && strings.HasPrefix(k, "CONFIG_") {
				cfg[k] = "n"
			}
		}
	}
	return cfg, nil
}

// bannerRelease is the release in a vmlinux's "Linux version <release> "
// banner ("" when there is none): an ELF has no setup header to read it from.
func bannerRelease(vmlinux []byte) string {
	const banner = "Linux version "
	i := bytes.Index(vmlinux, []byte(banner))
	if i < 0 {
		return ""
	}
	s := vmlinux[i+len(banner):]
	if j := bytes.IndexAny(s, " \x00\n"); j > 0 && j < 128 {
		return string(s[:j])
	}
	return ""
}

// compareReleases orders kernel releases by their numeric fields in turn
// (6.1.0-56 > 6.1.0-9), then as strings.
func compareReleases(a, b string) int {
	fa, fb := numericFields(a), numericFields(b)
	for i := 0; i < len(fa) && i < len(fb); i++ {
		if fa[i] != fb[i] {
			if fa[i] < fb[i] {
				return -1
			}
			return 1
		}
	}
	if len(fa) != len(fb) {
		if len(fa) < len(fb) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

func numericFields(s string) []int {
	var out []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r < '0' || r > '9' }) {
		n, _ := strconv.Atoi(f)
		out = append(out, n)
	}
	return out
}

// writeFileAtomic writes path through a temporary file in the same
// directory, fsynced, then renamed over it.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, mode)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Has9P says whether the guest kernel at kernel (of release) can mount
// the pod's directory over virtio-9p, which VMs cloned from a template
// need: its configuration beside it says so, or, without one, its
// modules include 9p and 9pnet_virtio.
func Has9P(kernel, release string) bool {
	if cfg, err := readKernelConfig(KernelConfigPath(kernel)); err == nil {
		in := func(v string) bool { return v == "y" || v == "m" }
		return in(cfg["CONFIG_9P_FS"]) && in(cfg["CONFIG_NET_9P_VIRTIO"])
	}
	dep, err := os.ReadFile(filepath.Join(ModulesDir(kernel, release), "modules.dep"))
	return err == nil && bytes.Contains(dep, []byte("/9p.ko")) && bytes.Contains(dep, []byte("/9pnet_virtio.ko"))
}
