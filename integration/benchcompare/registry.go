package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/sandbox/nsbox"
	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// The references both runtimes pull, served by the registry on loopback
// through certs.d mirrors (no upstream fallback: hosts.toml replaces the
// server).
const (
	busyboxRef = "docker.io/library/busybox:1.36"
	pauseRef   = "registry.k8s.io/pause:3.10"
)

// registry is the in-process OCI registry both daemons pull from, and the
// certs.d directory that sends docker.io and registry.k8s.io to it.
type registry struct {
	reg     *fixtures.Registry
	certsD  string
	pauseBy string // how containerd's pause binary was made
	tb      *mainTB
}

func startRegistry(work, kit string) (*registry, error) {
	tb := &mainTB{}
	r := &registry{reg: fixtures.StartRegistry(tb), certsD: filepath.Join(work, "certs.d"), tb: tb}
	r.reg.Push(tb, r.reg.Ref("library/busybox:1.36"), fixtures.Busybox(tb))
	pause, how, err := pauseImage(tb, work, kit)
	if err != nil {
		return nil, err
	}
	r.pauseBy = how
	r.reg.Push(tb, r.reg.Ref("pause:3.10"), pause)
	for _, host := range []string{"docker.io", "registry.k8s.io"} {
		dir := filepath.Join(r.certsD, host)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		hosts := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", r.reg.URL(), r.reg.URL())
		if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
			return nil, err
		}
	}
	log.Printf("registry on %s: %s, %s (pause: %s)", r.reg.Addr, busyboxRef, pauseRef, how)
	return r, nil
}

func (r *registry) close() { r.tb.runCleanups() }

// pauseImage is containerd's sandbox image: the conformance kit's pause.c
// (the Kubernetes pause: static C, exits on SIGTERM, reaps), built with gcc
// -static, else cradle's one-page pause program.
func pauseImage(tb testing.TB, work, kit string) (v1.Image, string, error) {
	bin, how := []byte(nil), ""
	src := filepath.Join(kit, "helpers", "pause.c")
	out := filepath.Join(work, "pause")
	if _, err := os.Stat(src); err == nil {
		if b, err := exec.Command("gcc", "-static", "-Os", "-o", out, src).CombinedOutput(); err != nil {
			log.Printf("gcc -static %s: %v: %s", src, err, b)
		} else if bin, err = os.ReadFile(out); err == nil {
			how = "static C from " + src
		}
	}
	if bin == nil {
		bin, how = nsbox.PauseProgram(goruntime.GOARCH), "cradle's one-page pause program"
	}
	if bin == nil {
		return nil, "", fmt.Errorf("no pause program for %s (gcc and %s are needed)", goruntime.GOARCH, src)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "pause", Mode: 0o755, Size: int64(len(bin)), ModTime: fixtures.FixedTime()}); err != nil {
		return nil, "", err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, "", err
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	img, err := mutate.AppendLayers(empty.Image, fixtures.LayerFromTar(tb, buf.Bytes()))
	if err != nil {
		return nil, "", err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, "", err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", goruntime.GOARCH
	cfg.Config.Entrypoint = []string{"/pause"}
	img, err = mutate.ConfigFile(img, cfg)
	return img, how, err
}

// mainTB lets a program use the test fixtures: a failure ends the program.
// Only the methods the fixtures call are implemented; the embedded nil
// testing.TB makes any other call panic.
type mainTB struct {
	testing.TB
	cleanups []func()
}

func (t *mainTB) Context() context.Context { return context.Background() }

func (t *mainTB) Helper()                        {}
func (t *mainTB) Cleanup(f func())               { t.cleanups = append(t.cleanups, f) }
func (t *mainTB) Fatal(args ...any)              { log.Fatal(args...) }
func (t *mainTB) Fatalf(format string, a ...any) { log.Fatalf(format, a...) }
func (t *mainTB) Skipf(format string, a ...any)  { log.Fatalf("unavailable: "+format, a...) }
func (t *mainTB) Logf(format string, a ...any)   { log.Printf(format, a...) }
func (t *mainTB) Errorf(format string, a ...any) { log.Fatalf(format, a...) }

func (t *mainTB) runCleanups() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	t.cleanups = nil
}
