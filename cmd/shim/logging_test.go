//go:build !guest

package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	clog "github.com/containerd/log"
	"github.com/containerd/nri/pkg/adaptation"
	nrilog "github.com/containerd/nri/pkg/log"
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

// NRI built with nri_no_wasm (the Makefile's GO_TAGS) says so as an error
// each time it starts: that is cradle's choice, logged at debug; NRI's
// other errors stay errors.
func TestBridgeContainerdLogsDemotesNRIWithoutWasm(t *testing.T) {
	var buf testutil.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	bridgeContainerdLogs(l, "info")
	ctx := context.Background()
	// As adaptation.New logs it.
	nrilog.Errorf(ctx, "failed to initialize WASM support: %v", adaptation.ErrWasmDisabled)
	nrilog.Errorf(ctx, "failed to start plugin %q: %v", "10-x", "exec format error")
	out := buf.String()
	if strings.Contains(out, "level=ERROR msg=\"failed to initialize WASM") {
		t.Errorf("NRI's WASM support left out at build time is an error:\n%s", out)
	}
	if !strings.Contains(out, `level=ERROR msg="failed to start plugin`) {
		t.Errorf("a real NRI error is lost:\n%s", out)
	}
}
