//go:build !guest

package main

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
)

// The runtime is not ready, with its reason, while the bake-in images are
// imported, and is once they are (or once the import failed).
func TestPreloadGatesRuntimeReady(t *testing.T) {
	for _, fail := range []bool{false, true} {
		release := make(chan struct{})
		load := func(_ context.Context, dir string) error {
			<-release
			if fail {
				return errors.New("one archive was corrupt")
			}
			return nil
		}
		p := startPreload(context.Background(), "/var/lib/cradle/preload", load, slog.New(slog.DiscardHandler))
		if reason, msg, ok := p.notReady(); ok || reason != "PreloadInProgress" || msg == "" {
			t.Fatalf("while loading: %q %q %v", reason, msg, ok)
		}
		close(release)
		waited := make(chan struct{})
		go func() { _ = p.wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			t.Fatal("wait did not return once the preload ended")
		}
		if _, _, ok := p.notReady(); !ok {
			t.Errorf("fail=%v: not ready after the preload ended", fail)
		}
	}
}
