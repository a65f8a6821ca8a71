package vmbox

import (
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
)

// vmOf is the pod's VM: the one this daemon started, else QEMU re-attached
// from the pod's fields (after a restart), kept for later calls.
func (b *Backend) vmOf(pod *sandbox.Pod) (*VM, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if vm := b.vms[pod.ID]; vm != nil {
		return vm, nil
	}
	if pod.Pid == 0 {
		return nil, fmt.Errorf("pod %s has no VM: %w", pod.ID, errdefs.ErrFailedPrecondition)
	}
	vm, err := Attach(b.spec(pod), pod.Pid, pod.PidStart, b.log)
	if err != nil {
		return nil, fmt.Errorf("attach to the pod's VM: %w", err)
	}
	b.vms[pod.ID] = vm
	return vm, nil
}
