//go:build !guest

package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/cradle-runtime/cradle/pkg/testutil"
)

func TestServeDebug(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := serveDebug(ctx, "127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr.String()
	for _, tt := range []struct{ path, want string }{
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/goroutine?debug=2", "TestServeDebug"},
		{"/debug/pprof/cmdline", "shim.test"},
		{"/debug/pprof/heap?debug=1", "heap profile"},
	} {
		resp, err := http.Get(base + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), tt.want) {
			t.Errorf("GET %s: %s, want %q in:\n%.300s", tt.path, resp.Status, tt.want, body)
		}
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := http.Get(base + "/debug/pprof/"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("debug endpoint still serves after its context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := serveDebug(context.Background(), "127.0.0.1:bad", slog.New(slog.DiscardHandler)); err == nil {
		t.Error("serveDebug on a bad address succeeded")
	}
}

// SIGUSR1 writes every goroutine's stack to the log (at a level it shows)
// and to the state directory.
func TestDumpStacksOnSIGUSR1(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	state := t.TempDir()
	var buf testutil.Buffer
	log := newLogger(config.Log{Level: "error", Format: "json"}, &buf)
	dumpStacksOnSignal(ctx, state, log)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "goroutine stacks") {
		if time.Now().After(deadline) {
			t.Fatalf("no stack dump logged after SIGUSR1:\n%s", buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	out := buf.String()
	for _, want := range []string{`"level":"ERROR"`, "TestDumpStacksOnSIGUSR1", "dumpStacksOnSignal", `"goroutines":`} {
		if !strings.Contains(out, want) {
			t.Errorf("dump lacks %q:\n%.500s", want, out)
		}
	}
	b, err := os.ReadFile(filepath.Join(state, "goroutines.txt"))
	if err != nil || !strings.Contains(string(b), "goroutine ") || !strings.Contains(string(b), "TestDumpStacksOnSIGUSR1") {
		t.Errorf("goroutines.txt: %v\n%.300s", err, b)
	}
}

func TestServeLogLevelFlag(t *testing.T) {
	cfgPath, _ := testConfig(t)
	tests := []struct {
		args      []string
		wantLevel string
		wantCode  int
	}{
		{[]string{"--config", cfgPath}, "info", 0},
		{[]string{"--config", cfgPath, "--log-level", "debug"}, "debug", 0},
		{[]string{"--log-level", "error", "--config", cfgPath}, "error", 0},
		{[]string{"--config", cfgPath, "--log-level", "loud"}, "", 2},
		{[]string{"--config", cfgPath, "extra"}, "", 2},
	}
	for _, tt := range tests {
		cfg, err := serveConfig(tt.args, io.Discard)
		if code := exitCode(err); code != tt.wantCode || (err == nil && cfg.Log.Level != tt.wantLevel) {
			t.Errorf("serve %q: level %q, %v (exit %d); want level %q, exit %d", tt.args, cfg.Log.Level, err, code, tt.wantLevel, tt.wantCode)
		}
	}
}
