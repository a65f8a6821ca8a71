package sandbox

import (
	"context"
	"os/exec"
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
