package vmbox

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// libDirs are where a guest binary's shared libraries are looked for: the
// host's multiarch and legacy library directories.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// sharedLibs lists every file binary needs to run: its ELF interpreter and
// its DT_NEEDED libraries, recursively, resolved in libDirs (no ldd: that
// would run the binary). Paths are the host's, each once, sorted.
func sharedLibs(binary string) ([]string, error) {
	seen := map[string]bool{}
	var walk func(path string) error
	walk = func(path string) error {
		f, err := elf.Open(path)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		defer func() { _ = f.Close() }()
		for _, p := range f.Progs {
			if p.Type != elf.PT_INTERP {
				continue
			}
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return fmt.Errorf("interpreter of %s: %w", path, err)
			}
			interp := string(b[:len(b)-1]) // NUL-terminated
			seen[interp] = true
		}
		needed, err := f.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("libraries of %s: %w", path, err)
		}
		for _, n := range needed {
			lib, err := findLib(n)
			if err != nil {
				return fmt.Errorf("%s needs %s: %w", path, n, err)
			}
			if seen[lib] {
				continue
			}
			seen[lib] = true
			if err := walk(lib); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(binary); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}

func findLib(name string) (string, error) {
	for _, d := range libDirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("not found in %v: %w", libDirs, os.ErrNotExist)
}
