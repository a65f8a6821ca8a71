//go:build !guest

package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	clog "github.com/containerd/log"
	"github.com/cradle-runtime/cradle/pkg/testutil"
)

// containerd's fsverity warning is debug noise; its other warnings stay
// warnings.
func TestBridgeContainerdLogsDemotesNoise(t *testing.T) {
	for _, level := range []string{"info", "debug"} {
		var buf testutil.Buffer
		l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		bridgeContainerdLogs(l, level)
		clog.G(context.Background()).WithField("path", "/x").Warn("failed check for fsverity support")
		clog.G(context.Background()).Warn("something real")
		out := buf.String()
		if !strings.Contains(out, `level=WARN msg="something real"`) {
			t.Errorf("level %s: a real warning is lost:\n%s", level, out)
		}
		if strings.Contains(out, "level=WARN msg=\"failed check for fsverity") {
			t.Errorf("level %s: the fsverity check is a warning:\n%s", level, out)
		}
		if level == "debug" && !strings.Contains(out, `level=DEBUG msg="failed check for fsverity support"`) {
			t.Errorf("at debug the fsverity check is not logged at debug:\n%s", out)
		}
	}
}
