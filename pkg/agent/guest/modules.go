package guest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ModulesDep is a parsed modules.dep: each module's path (relative to the
// release directory) and its dependencies, in file order.
type ModulesDep struct {
	Order []string            // modules in file order
	Deps  map[string][]string // module → what it needs, as modules.dep lists it
}

// ParseModulesDep reads modules.dep ("kernel/a.ko: kernel/b.ko kernel/c.ko").
func ParseModulesDep(r io.Reader) (ModulesDep, error) {
	md := ModulesDep{Deps: map[string][]string{}}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		mod, deps, ok := strings.Cut(line, ":")
		if !ok {
			return ModulesDep{}, fmt.Errorf("modules.dep: bad line %q", line)
		}
		if _, dup := md.Deps[mod]; !dup {
			md.Order = append(md.Order, mod)
		}
		md.Deps[mod] = strings.Fields(deps)
	}
	return md, sc.Err()
}

// LoadOrder lists mods and everything they need, each once, dependencies
// first. modules.dep names a module's dependencies so that loading them
// from last to first satisfies each before its users (modprobe's order).
func (md ModulesDep) LoadOrder(mods []string) ([]string, error) {
	var out []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(m string) error
	visit = func(m string) error {
		switch state[m] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", m)
		case 2:
			return nil
		}
		deps, ok := md.Deps[m]
		if !ok {
			return fmt.Errorf("module %s is not in modules.dep", m)
		}
		state[m] = 1
		for i := len(deps) - 1; i >= 0; i-- {
			if err := visit(deps[i]); err != nil {
				return err
			}
		}
		state[m] = 2
		out = append(out, m)
		return nil
	}
	for _, m := range mods {
		if err := visit(m); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// loadModules loads every module of dir/modules.dep (the initramfs holds
// only those the guest needs) with finit_module, dependencies first. A
// module already loaded is fine.
func loadModules(dir string) ([]string, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // a kernel with everything built in
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	md, err := ParseModulesDep(f)
	if err != nil {
		return nil, err
	}
	order, err := md.LoadOrder(md.Order)
	if err != nil {
		return nil, err
	}
	for _, m := range order {
		if err := finitModule(filepath.Join(dir, m)); err != nil {
			return order, err
		}
	}
	return order, nil
}

func finitModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", filepath.Base(path), err)
	}
	return nil
}
