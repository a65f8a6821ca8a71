package sandbox

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/config"
)

func TestProbeHandlersVM(t *testing.T) {
	rc := config.Runtime{Handlers: map[string]config.Handler{
		"vm-missing": {Kind: config.KindVM, Binary: "/nonexistent/qemu-system-x86_64"},
		"nope":       {Kind: config.KindOCI, Binary: "/nonexistent/runc"},
	}}
	hs := ProbeHandlers(context.Background(), rc)
	if len(hs) != 2 || hs[0].Name != "nope" || hs[1].Name != "vm-missing" {
		t.Fatalf("handlers = %+v", hs)
	}
	for _, h := range hs {
		if h.Problem == "" || h.Binary != "" {
			t.Errorf("%s: missing binary not reported: %+v", h.Name, h)
		}
	}
	if hs[1].Kind != config.KindVM {
		t.Errorf("kind = %q", hs[1].Kind)
	}

	// A VMM that exists is no problem here (the kernel is the VM wiring's
	// to check) and is never asked for OCI features.
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	hs = ProbeHandlers(context.Background(), config.Runtime{Handlers: map[string]config.Handler{
		"vm": {Kind: config.KindVM, Binary: "sh"},
	}})
	if hs[0].Problem != "" || hs[0].Binary != sh || hs[0].Features != (HandlerFeatures{}) {
		t.Errorf("vm handler with a VMM: %+v", hs[0])
	}
}

// TestProbeHandlersReadOnlyTrees: a runtime that lists "rro" makes its
// own recursive read-only mounts; one without the features command (crun
// 1.8) or without "rro" gets the daemon's read-only trees; both report
// the feature where mount_setattr(2) works.
func TestProbeHandlersReadOnlyTrees(t *testing.T) {
	if !mountSetattrWorks() {
		t.Skip("no mount_setattr(2)")
	}
	dir := t.TempDir()
	script := func(name, features string) string {
		p := filepath.Join(dir, name)
		body := "#!/bin/sh\nif [ \"$1\" = features ]; then " + features + "; fi\necho \"" + name + " version 1\"\n"
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hs := ProbeHandlers(context.Background(), config.Runtime{Handlers: map[string]config.Handler{
		"a-native": {Kind: config.KindOCI, Binary: script("native", `echo '{"mountOptions":["ro","rro"]}'; exit 0`)},
		"b-none":   {Kind: config.KindOCI, Binary: script("none", `echo unknown command >&2; exit 1`)},
		"c-norro":  {Kind: config.KindOCI, Binary: script("norro", `echo '{"mountOptions":["ro"]}'; exit 0`)},
	}})
	want := []HandlerFeatures{
		{RecursiveReadOnlyMounts: true},
		{RecursiveReadOnlyMounts: true, ReadOnlyTrees: true},
		{RecursiveReadOnlyMounts: true, ReadOnlyTrees: true},
	}
	for i, h := range hs {
		if h.Problem != "" || h.Features != want[i] {
			t.Errorf("%s: features %+v, problem %q; want %+v", h.Name, h.Features, h.Problem, want[i])
		}
	}
}
