//go:build !guest

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"time"

	"golang.org/x/sys/unix"
)

// serveDebug serves Go's net/http/pprof under /debug/pprof/ on addr (which
// config validation keeps on loopback) until ctx ends, on a mux of its
// own: the package also registers itself on http.DefaultServeMux, which
// cradle never serves.
func serveDebug(ctx context.Context, addr string, log *slog.Logger) (net.Addr, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug endpoint: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // and the named profiles: goroutine, heap, block…
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("debug endpoint stopped", "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	return lis.Addr(), nil
}

// dumpStacksOnSignal writes every goroutine's stack to the log, and to
// stateDir/goroutines.txt (readable as it is, where a text log escapes
// newlines), each time the process gets SIGUSR1, until ctx ends. It
// returns once the signal is watched.
func dumpStacksOnSignal(ctx context.Context, stateDir string, log *slog.Logger) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGUSR1)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				dumpStacks(ctx, stateDir, log)
			}
		}
	}()
}

func dumpStacks(ctx context.Context, stateDir string, log *slog.Logger) {
	stacks := allStacks()
	attrs := []any{"goroutines", goruntime.NumGoroutine()}
	file := filepath.Join(stateDir, "goroutines.txt")
	if err := os.WriteFile(file, stacks, 0o600); err != nil {
		attrs = append(attrs, "file_error", err)
	} else {
		attrs = append(attrs, "file", file)
	}
	attrs = append(attrs, "stacks", string(stacks))
	// Asked for explicitly: logged at the lowest level the log shows.
	level := slog.LevelInfo
	for level < slog.LevelError && !log.Enabled(ctx, level) {
		level += 4
	}
	log.Log(ctx, level, "goroutine stacks (SIGUSR1)", attrs...)
}

// allStacks is runtime.Stack of every goroutine, in a buffer grown until
// it holds them all.
func allStacks() []byte {
	buf := make([]byte, 1<<20)
	for {
		n := goruntime.Stack(buf, true)
		if n < len(buf) {
			return buf[:n]
		}
		buf = make([]byte, 2*len(buf))
	}
}
