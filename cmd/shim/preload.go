//go:build !guest

package main

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// preloader imports the bake-in images in the background once the daemon
// serves, so that a large preload on a node's first boot cannot outlast
// its service manager's start timeout; RuntimeReady stays false, with its
// reason, until it is done (kubelet starts no pod on a runtime that is not
// ready).
type preloader struct {
	dir     string
	pending atomic.Bool
	done    chan struct{}
}

// startPreload runs load(ctx, dir) in the background.
func startPreload(ctx context.Context, dir string, load func(context.Context, string) error, log *slog.Logger) *preloader {
	p := &preloader{dir: dir, done: make(chan struct{})}
	p.pending.Store(true)
	go func() {
		defer close(p.done)
		defer p.pending.Store(false)
		start := time.Now()
		if err := load(ctx, dir); err != nil {
			// Reported per archive; the images that did load are served.
			log.Error("bake-in images not all loaded", "dir", dir, "error", err)
			return
		}
		log.Info("bake-in images loaded", "dir", dir, "took", time.Since(start).Round(time.Millisecond))
	}()
	return p
}

// notReady says why the runtime is not ready yet, or ok.
func (p *preloader) notReady() (reason, message string, ok bool) {
	if p.pending.Load() {
		return "PreloadInProgress", "importing the bake-in images of " + p.dir, false
	}
	return "", "", true
}

// wait waits for the preload to end (its context cancelled at shutdown),
// before the image store closes.
func (p *preloader) wait() error {
	<-p.done
	return nil
}
