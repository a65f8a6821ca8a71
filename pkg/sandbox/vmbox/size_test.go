package vmbox

import (
	"runtime"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
)

func TestSize(t *testing.T) {
	m := Machine{VCPUs: 1, MemoryMiB: 256}
	pod := func(res, overhead *ctrconfig.Resources) *sandbox.Pod {
		return &sandbox.Pod{Config: sandbox.PodConfig{Resources: res, Overhead: overhead}}
	}
	tests := []struct {
		name      string
		pod       *sandbox.Pod
		cpus, mem int
	}{
		{"no config", &sandbox.Pod{}, 1, 256},
		{"no resources", pod(nil, nil), 1, 256},
		{"half a CPU, 100 MiB", pod(&ctrconfig.Resources{CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 100 << 20}, nil), min(2, runtime.NumCPU()), 356},
		{"with overhead", pod(&ctrconfig.Resources{MemoryLimit: 1}, &ctrconfig.Resources{MemoryLimit: 64 << 20}), 1, 256 + 1 + 64},
		{"more CPUs than the host", pod(&ctrconfig.Resources{CPUQuota: 6400000, CPUPeriod: 100000}, nil), runtime.NumCPU(), 256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, mem := Size(m, tt.pod); c != tt.cpus || mem != tt.mem {
				t.Errorf("Size = %d vCPUs, %d MiB; want %d, %d", c, mem, tt.cpus, tt.mem)
			}
		})
	}
}
