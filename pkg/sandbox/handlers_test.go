package sandbox

import (
	"context"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/config"
)

func TestProbeHandlersReportsAVMHandlerUnavailable(t *testing.T) {
	rc := config.Runtime{Handlers: map[string]config.Handler{
		"vm":   {Kind: config.KindVM, Binary: "/usr/bin/qemu-system-x86_64"},
		"nope": {Kind: config.KindOCI, Binary: "/nonexistent/runc"},
	}}
	hs := ProbeHandlers(context.Background(), rc)
	if len(hs) != 2 || hs[0].Name != "nope" || hs[1].Name != "vm" {
		t.Fatalf("handlers = %+v", hs)
	}
	for _, h := range hs {
		if h.Problem == "" {
			t.Errorf("%s: no problem reported", h.Name)
		}
	}
	if hs[1].Kind != config.KindVM || hs[1].Version != "" {
		t.Errorf("the VM handler was probed as an OCI runtime: %+v", hs[1])
	}
}
