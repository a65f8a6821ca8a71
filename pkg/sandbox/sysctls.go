package sandbox

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/osthread"
	"golang.org/x/sys/unix"
)

// sysctlNamespace says which namespace holds a sysctl, as kubelet's safe-
// and unsafe-sysctl rules see it: net.* in the network namespace, the IPC
// ones in the IPC namespace. Others are not namespaced: a pod cannot set
// them.
func sysctlNamespace(name string) (kind string, nstype int, ok bool) {
	switch {
	case strings.HasPrefix(name, "net."):
		return "net", unix.CLONE_NEWNET, true
	case name == "kernel.sem", strings.HasPrefix(name, "kernel.shm"), strings.HasPrefix(name, "kernel.msg"), strings.HasPrefix(name, "fs.mqueue."):
		return "ipc", unix.CLONE_NEWIPC, true
	}
	return "", 0, false
}

// applySysctls writes the pod's sysctls inside its namespaces.
func applySysctls(pod *Pod) error {
	names := make([]string, 0, len(pod.Config.Sysctls))
	for k := range pod.Config.Sysctls {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		value := pod.Config.Sysctls[name]
		kind, nstype, ok := sysctlNamespace(name)
		if !ok {
			return fmt.Errorf("sysctl %s is not namespaced: %w", name, errdefs.ErrInvalidArgument)
		}
		nsPath := pod.NetNS
		if kind == "ipc" {
			nsPath = pod.NS["ipc"]
		}
		if nsPath == "" {
			return fmt.Errorf("sysctl %s needs the pod's own %s namespace, and the pod uses the host's: %w", name, kind, errdefs.ErrInvalidArgument)
		}
		file := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
		if err := inNamespace(nsPath, nstype, func() error {
			return os.WriteFile(file, []byte(value), 0o644)
		}); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", name, value, err)
		}
	}
	return nil
}

// inNamespace runs fn on a thread that has joined the namespace at path.
// The thread is never handed back to the Go scheduler: it exits with the
// goroutine, so no other code ever runs in the namespace by accident.
func inNamespace(path string, nstype int, fn func() error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", path, err)
	}
	defer func() { _ = f.Close() }()
	return osthread.Run(func() error {
		if err := unix.Setns(int(f.Fd()), nstype); err != nil {
			return fmt.Errorf("enter namespace %s: %w", path, err)
		}
		return fn()
	})
}
