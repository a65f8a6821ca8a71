package vmbox

import (
	"path/filepath"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/config"
)

func TestResolveAccel(t *testing.T) {
	dir := t.TempDir()
	for _, mode := range []string{config.AccelKVM, config.AccelTCG} {
		if got := ResolveAccel(mode, "/dev/kvm", "/sys"); got.Mode != mode {
			t.Errorf("ResolveAccel(%q) = %+v", mode, got)
		}
	}
	if got := ResolveAccel(config.AccelAuto, filepath.Join(dir, "no-kvm"), "/sys"); got.Mode != config.AccelTCG || got.Reason == "" {
		t.Errorf("auto without /dev/kvm = %+v, want tcg with a reason", got)
	}
	got := ResolveAccel(config.AccelAuto, "/dev/kvm", "/sys")
	t.Logf("auto on this host: %+v", got)
}
