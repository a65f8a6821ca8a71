package vmbox

import (
	"runtime"

	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
)

// Size is the vCPUs and memory of pod's VM: the handler's defaults (what
// the guest kernel and agent need) plus the pod's resources as kubelet
// gives them (the sum of its containers' limits) and its RuntimeClass
// overhead, as Kata sizes its VMs. vCPUs never exceed the host's. Pure.
func Size(m Machine, pod *sandbox.Pod) (vcpus, memoryMiB int) {
	vcpus, memoryMiB = m.VCPUs, m.MemoryMiB
	for _, r := range []*ctrconfig.Resources{pod.Config.Resources, pod.Config.Overhead} {
		if r == nil {
			continue
		}
		if r.CPUQuota > 0 && r.CPUPeriod > 0 {
			vcpus += int((r.CPUQuota + r.CPUPeriod - 1) / r.CPUPeriod)
		}
		if r.MemoryLimit > 0 {
			memoryMiB += int((r.MemoryLimit + 1<<20 - 1) >> 20)
		}
	}
	return min(vcpus, runtime.NumCPU()), memoryMiB
}

// size is Size with the backend's machine.
func (b *Backend) size(pod *sandbox.Pod) (int, int) { return Size(b.machine, pod) }
