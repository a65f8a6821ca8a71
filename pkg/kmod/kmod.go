// Package kmod reads a kernel's modules.dep: the host reads it to put the
// modules a guest needs, and what they need, into the initramfs; the
// guest agent to load them in order.
package kmod

import (
	"bufio"
	"fmt"
	"io"
	"strings"
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
