package sandbox

import (
	"os"

	"github.com/cradle-runtime/cradle/pkg/config"
)

// ResolveCgroupDriver turns the configured driver into the one in use:
// "auto" is systemd when systemd is the init system (the check sd_booted(3)
// makes), cgroupfs otherwise.
func ResolveCgroupDriver(configured string) string {
	if configured != config.CgroupDriverAuto {
		return configured
	}
	if fi, err := os.Lstat("/run/systemd/system"); err == nil && fi.IsDir() {
		return config.CgroupDriverSystemd
	}
	return config.CgroupDriverCgroupfs
}
