package vmbox

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
	"github.com/cradle-runtime/cradle/pkg/kmod"
)

// GuestModules are the kernel modules the guest needs when its kernel has
// them as modules (Debian's does): virtio-mmio transport, the agent's
// virtio-serial port, virtiofs (and 9p, for VMs cloned from a template)
// for container roots, the NIC, and the
// balloon that reports freed pages to the host.
func GuestModules() []string {
	return []string{"virtio_mmio", "virtio_console", "fuse", "virtiofs", "9pnet_virtio", "9p", "virtio_net", "virtio_balloon"}
}

// InitramfsSpec is what a guest initramfs holds.
type InitramfsSpec struct {
	// Agent is the static guest agent (cradle built with the guest tag:
	// `cradle agent` without the daemon); it becomes /init.
	Agent string
	// ModulesDir is the guest kernel's /lib/modules/<release> ("" when
	// its kernel has everything built in).
	ModulesDir string
	// Modules are loaded in the guest, with what they depend on; those the
	// kernel has built in (modules.builtin) are skipped.
	Modules []string
	// Runtime is the host's OCI runtime binary (crun) the guest runs
	// containers with: it goes to api.GuestRuntime, with the shared
	// libraries it needs at their host paths.
	Runtime string
	// Gzip compresses the archive. Uncompressed boots faster under TCG
	// (the guest does not inflate in emulation) at the cost of host disk
	// and page cache; see BenchmarkBoot.
	Gzip bool
}

// initramfsFormat changes whenever the archive layout does, so that cached
// archives of an older layout are not reused.
const initramfsFormat = "cradle-initramfs-2"

// BuildInitramfs returns the path of the initramfs for spec, cached under
// cacheDir by the hash of everything in it; a new one is written atomically.
func BuildInitramfs(ctx context.Context, cacheDir string, spec InitramfsSpec) (string, error) {
	mods, dep, err := resolveModules(spec.ModulesDir, spec.Modules)
	if err != nil {
		return "", err
	}
	release := "" // no modules: a kernel with everything built in
	if spec.ModulesDir != "" {
		release = filepath.Base(spec.ModulesDir)
	}
	bins, err := guestBinaries(spec.Runtime)
	if err != nil {
		return "", err
	}
	files := append([]string{spec.Agent}, mods...)
	for _, b := range bins {
		files = append(files, b.host) // its guest path follows from it
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\ngzip=%v\nrelease=%s\n%s", initramfsFormat, spec.Gzip, release, dep)
	for i, f := range files {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		if i > 0 {
			fmt.Fprintf(h, "\n%s\n", strings.TrimPrefix(f, spec.ModulesDir))
		}
		if err := hashFile(h, f); err != nil {
			return "", err
		}
	}
	name := hex.EncodeToString(h.Sum(nil)) + ".cpio"
	if spec.Gzip {
		name += ".gz"
	}
	out := filepath.Join(cacheDir, name)
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return "", fmt.Errorf("initramfs cache: %w", err)
	}
	tmp, err := os.CreateTemp(cacheDir, "."+name+".*")
	if err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	if err := writeInitramfs(tmp, spec, release, mods, dep, bins); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("initramfs: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	return out, nil
}

func writeInitramfs(f *os.File, spec InitramfsSpec, release string, mods []string, dep string, bins []guestBinary) error {
	bw := bufio.NewWriterSize(f, 1<<20)
	var w io.Writer = bw
	var zw *gzip.Writer
	if spec.Gzip {
		zw, _ = gzip.NewWriterLevel(bw, gzip.BestSpeed)
		w = zw
	}
	c := newCPIOWriter(w)
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "lib", "lib/modules"} {
		c.Dir(d, 0o755)
	}
	if err := addFile(c, "init", spec.Agent, 0o755); err != nil {
		return err
	}
	if err := addBinaries(c, bins); err != nil {
		return err
	}
	if len(mods) > 0 {
		root := "lib/modules/" + release
		dirs := map[string]bool{}
		for _, m := range mods {
			rel := strings.TrimPrefix(m, spec.ModulesDir+"/")
			for d := filepath.Dir(rel); d != "."; d = filepath.Dir(d) {
				dirs[d] = true
			}
		}
		c.Dir(root, 0o755)
		for _, d := range sortedKeys(dirs) {
			c.Dir(root+"/"+d, 0o755)
		}
		for _, m := range mods {
			if err := addFile(c, root+"/"+strings.TrimPrefix(m, spec.ModulesDir+"/"), m, 0o644); err != nil {
				return err
			}
		}
		c.File(root+"/modules.dep", 0o644, int64(len(dep)), strings.NewReader(dep))
	}
	if err := c.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}

func addFile(c *cpioWriter, name, path string, perm uint32) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	c.File(name, perm, st.Size(), f)
	return nil
}

// resolveModules finds wanted modules and their dependencies in dir's
// modules.dep and returns their paths, in load order, with a modules.dep
// trimmed to them (which the agent loads from). Built-in modules are
// skipped; a module that is neither is an error.
func resolveModules(dir string, wanted []string) (paths []string, dep string, err error) {
	if dir == "" || len(wanted) == 0 {
		return nil, "", nil
	}
	depText, err := os.ReadFile(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, "", fmt.Errorf("guest modules: %w", err)
	}
	md, err := kmod.ParseModulesDep(bytes.NewReader(depText))
	if err != nil {
		return nil, "", err
	}
	builtin, _ := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	byName := map[string]string{}
	for _, m := range md.Order {
		byName[moduleName(m)] = m
	}
	builtins := map[string]bool{}
	for _, l := range strings.Fields(string(builtin)) {
		builtins[moduleName(l)] = true
	}
	var roots []string
	for _, w := range wanted {
		w = strings.ReplaceAll(w, "-", "_")
		switch {
		case byName[w] != "":
			roots = append(roots, byName[w])
		case builtins[w]:
		default:
			return nil, "", fmt.Errorf("guest module %s is neither built into the kernel nor in %s", w, dir)
		}
	}
	order, err := md.LoadOrder(roots)
	if err != nil {
		return nil, "", err
	}
	var b strings.Builder
	for _, m := range order {
		if !strings.HasSuffix(m, ".ko") {
			return nil, "", fmt.Errorf("guest module %s is compressed: not supported yet", m)
		}
		paths = append(paths, filepath.Join(dir, m))
		fmt.Fprintf(&b, "%s:", m)
		for _, d := range md.Deps[m] {
			fmt.Fprintf(&b, " %s", d)
		}
		b.WriteString("\n")
	}
	return paths, b.String(), nil
}

// moduleName is a module path's name as the kernel spells it.
func moduleName(path string) string {
	n := filepath.Base(path)
	if i := strings.Index(n, ".ko"); i >= 0 {
		n = n[:i]
	}
	return strings.ReplaceAll(n, "-", "_")
}

func hashFile(h io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("initramfs: %s: %w", path, err)
	}
	return nil
}

// sortedKeys sorts m's keys: parents come before their children.
func sortedKeys(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }

// guestBinary is a host file the guest needs at guest.
type guestBinary struct{ host, guest string }

// guestBinaries are the OCI runtime (at api.GuestRuntime) and its shared
// libraries (at their host paths); none when runtime is "".
func guestBinaries(runtime string) ([]guestBinary, error) {
	if runtime == "" {
		return nil, nil
	}
	libs, err := sharedLibs(runtime)
	if err != nil {
		return nil, fmt.Errorf("guest OCI runtime: %w", err)
	}
	out := []guestBinary{{host: runtime, guest: strings.TrimPrefix(api.GuestRuntime, "/")}}
	for _, l := range libs {
		out = append(out, guestBinary{host: l, guest: strings.TrimPrefix(l, "/")})
	}
	return out, nil
}

// addBinaries writes bins and the directories they are in (symlinks on
// the host are followed: the guest gets the files).
func addBinaries(c *cpioWriter, bins []guestBinary) error {
	dirs := map[string]bool{}
	for _, b := range bins {
		for d := filepath.Dir(b.guest); d != "."; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	for _, d := range sortedKeys(dirs) {
		if d != "lib" { // made with the fixed directories
			c.Dir(d, 0o755)
		}
	}
	for _, b := range bins {
		if err := addFile(c, b.guest, b.host, 0o755); err != nil {
			return err
		}
	}
	return nil
}
