package vmbox

import (
	"runtime"

	"github.com/cradle-runtime/cradle/pkg/sandbox"
	criapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Size is the vCPUs and memory of pod's VM: the handler's defaults (what
// the guest kernel and agent need) plus the pod's resources as kubelet
// gives them (the sum of its containers' limits) and its RuntimeClass
// overhead, as Kata sizes its VMs. vCPUs never exceed the host's. Pure.
func Size(m Machine, pod *sandbox.Pod) (vcpus, memoryMiB int) {
	vcpus, memoryMiB = m.VCPUs, m.MemoryMiB
	lc := pod.Config.Raw.GetLinux()
	for _, r := range []*criapi.LinuxContainerResources{lc.GetResources(), lc.GetOverhead()} {
		if r == nil {
			continue
		}
		if r.CpuQuota > 0 && r.CpuPeriod > 0 {
			vcpus += int((r.CpuQuota + r.CpuPeriod - 1) / r.CpuPeriod)
		}
		if r.MemoryLimitInBytes > 0 {
			memoryMiB += int((r.MemoryLimitInBytes + 1<<20 - 1) >> 20)
		}
	}
	return min(vcpus, runtime.NumCPU()), memoryMiB
}

// size is Size with the backend's machine.
func (b *Backend) size(pod *sandbox.Pod) (int, int) { return Size(b.machine, pod) }
