package integration

import (
	"bytes"
	"os"
	"testing"
)

// The daemon as make build makes it leaves out gRPC's x/net/trace (the
// grpcnotrace tag): cradle never enables it, and its html/template made the
// linker keep every exported method (6 MB of binary, 3 MB of idle RSS);
// and NRI's WebAssembly runtime (the nri_no_wasm tag).
// The function names stay in a stripped Go binary's pclntab.
func TestBinaryLeavesOutRPCTracing(t *testing.T) {
	b, err := os.ReadFile(cradleBin)
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range []string{"golang.org/x/net/trace.", "html/template.",
		// nri_no_wasm: no WebAssembly runtime for NRI plugins (2.3 MB).
		"github.com/tetratelabs/wazero/internal/engine/interpreter.", "containerd/nri/pkg/adaptation.getWasmService"} {
		if bytes.Contains(b, []byte(pkg)) {
			t.Errorf("%s links %s", cradleBin, pkg)
		}
	}
}
