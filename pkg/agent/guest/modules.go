package guest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cradle-runtime/cradle/pkg/kmod"
	"golang.org/x/sys/unix"
)

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
	md, err := kmod.ParseModulesDep(f)
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
