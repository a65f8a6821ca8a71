package vmbox

import (
	"path/filepath"

	"github.com/cradle-runtime/cradle/pkg/sandbox"
)

// TEMPORARY until branch vmhost merges (it defines these).
func SharedDir(pod *sandbox.Pod) string { return filepath.Join(pod.Dir, "shared") }

func (b *Backend) size(*sandbox.Pod) (int, int) { return b.machine.VCPUs, b.machine.MemoryMiB }
