// Package nsbox is the Backend for namespace+cgroup pods: containers run by
// an OCI runtime binary (runc, crun) on the host, joining namespaces the pod
// holds. No infra ("pause") process holds them: the IPC and UTS namespaces
// are pinned by bind mounts of their /proc nsfs files (the network
// namespace is pinned the same way by the network), so an idle pod costs no
// process and no memory beyond its /dev/shm. The one exception is a pod
// that shares one PID namespace between its containers: a PID namespace
// needs a living init, so such a pod gets an infra process (see infra.go).
package nsbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cradle-runtime/cradle/pkg/osthread"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/cradle-runtime/cradle/pkg/sandbox/nsbox/ociruntime"
	"golang.org/x/sys/unix"
)

// shmSize is the size of a pod's /dev/shm, as containerd and Docker give.
const shmSize = "65536k"

// Backend implements sandbox.Backend for the namespace pods of one
// handler. Its containers' cgroups are the host's (sandbox.HostCgroups).
type Backend struct {
	sandbox.HostCgroups
	log   *slog.Logger
	rt    *ociruntime.Runtime // the handler's; nil: it has none ready
	pause []string            // the infra process's command
	// readOnlyTrees: the runtime has no "rro"; the backend makes the
	// read-only trees (sandbox.HandlerFeatures.ReadOnlyTrees).
	readOnlyTrees bool
}

// New makes the backend of one handler over its OCI runtime (nil: none is
// ready; its pods run, its containers are FailedPrecondition) and the
// host's cgroups; pause is the command of the infra process (cradle's
// `pause`); features are what probing the handler found.
func New(log *slog.Logger, rt *ociruntime.Runtime, pause []string, cgroups sandbox.Cgroups, features sandbox.HandlerFeatures) *Backend {
	return &Backend{HostCgroups: sandbox.HostCgroups{Cgroups: cgroups, Log: log}, log: log, rt: rt, pause: pause,
		readOnlyTrees: features.ReadOnlyTrees}
}

var _ sandbox.Backend = (*Backend)(nil)

// StartPod pins the pod's IPC and UTS namespaces (the UTS one with the
// pod's hostname) and mounts its /dev/shm. A pod on the host's network
// uses the host's UTS namespace; one with host IPC uses the host's IPC
// namespace and /dev/shm. A pod that shares its PID namespace gets an
// infra process.
func (b *Backend) StartPod(ctx context.Context, pod *sandbox.Pod) error {
	if pod.Config.UserNS != nil {
		if err := b.startUserNS(ctx, pod); err != nil {
			return err
		}
		return mountShm(pod)
	}
	if pod.Config.PID == ctrconfig.NamespacePod {
		if err := b.startInfra(pod); err != nil {
			return err
		}
	}
	var kinds []string
	if pod.Config.IPC != ctrconfig.NamespaceNode {
		kinds = append(kinds, "ipc")
	}
	if pod.Config.Network != ctrconfig.NamespaceNode {
		kinds = append(kinds, "uts")
	}
	if len(kinds) > 0 {
		paths, err := pin(pod.Dir, pod.Config.Hostname, kinds)
		if err != nil {
			return err
		}
		for k, p := range paths {
			pod.NS[k] = p
		}
	}
	if pod.Config.IPC == ctrconfig.NamespaceNode {
		pod.Shm = "/dev/shm"
		return nil
	}
	return mountShm(pod)
}

// mountShm mounts the pod's /dev/shm, owned by the pod's root: the host's,
// or the mapped one of a pod in a user namespace.
func mountShm(pod *sandbox.Pod) error {
	shm := filepath.Join(pod.Dir, "shm")
	if err := os.MkdirAll(shm, 0o755); err != nil {
		return err
	}
	data := "mode=1777,size=" + shmSize
	if u := pod.Config.UserNS; u != nil {
		data += fmt.Sprintf(",uid=%d,gid=%d", u.UIDs[0].HostID, u.GIDs[0].HostID)
	}
	if err := unix.Mount("shm", shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, data); err != nil {
		return fmt.Errorf("mount the pod's /dev/shm: %w", err)
	}
	pod.Shm = shm
	return nil
}

// JoinNetwork does nothing: the pod's containers join its network
// namespace, which the network has wired.
func (b *Backend) JoinNetwork(context.Context, *sandbox.Pod) error { return nil }

// StopPod ends the pod's infra process, if it has one.
func (b *Backend) StopPod(ctx context.Context, pod *sandbox.Pod) error { return stopInfra(ctx, pod) }

// DeletePod ends the infra process, unmounts the pod's /dev/shm and unpins
// its namespaces. Everything is found from the pod's directory and ID, not
// from the fields StartPod fills: a crash may have come before they were
// recorded.
func (b *Backend) DeletePod(ctx context.Context, pod *sandbox.Pod) error {
	errs := []error{stopInfra(ctx, pod)}
	if pod.Dir == "" {
		return errors.Join(errs...)
	}
	for _, p := range []string{filepath.Join(pod.Dir, "shm"), filepath.Join(pod.Dir, "ns-ipc"), filepath.Join(pod.Dir, "ns-uts")} {
		errs = append(errs, unmountRemove(p))
	}
	// The pins of a pod in a user namespace, by path: StartPod may have
	// made them before the pod's fields were saved (the network
	// namespace's pin is one of them; the engine's RemoveNetNS then finds
	// it gone).
	for _, kind := range userNSKinds {
		errs = append(errs, unmountRemove(filepath.Join(pod.Dir, "ns-"+kind)))
	}
	return errors.Join(errs...)
}

// pin makes new namespaces of kinds on a thread of their own and bind-mounts
// their nsfs files to dir/ns-<kind>. The thread is thrown away
// (osthread.Run); the mounts keep the namespaces alive.
func pin(dir, hostname string, kinds []string) (map[string]string, error) {
	flags := 0
	paths := map[string]string{}
	for _, k := range kinds {
		switch k {
		case "ipc":
			flags |= unix.CLONE_NEWIPC
		case "uts":
			flags |= unix.CLONE_NEWUTS
		}
		paths[k] = filepath.Join(dir, "ns-"+k)
		f, err := os.OpenFile(paths[k], os.O_CREATE|os.O_RDONLY, 0o444)
		if err != nil {
			return nil, err
		}
		_ = f.Close()
	}
	err := osthread.Run(func() error {
		if err := unix.Unshare(flags); err != nil {
			return fmt.Errorf("unshare %v: %w", kinds, err)
		}
		if flags&unix.CLONE_NEWUTS != 0 {
			if err := unix.Sethostname([]byte(hostname)); err != nil {
				return fmt.Errorf("set hostname %q: %w", hostname, err)
			}
		}
		for k, p := range paths {
			if err := unix.Mount(fmt.Sprintf("/proc/thread-self/ns/%s", k), p, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("pin %s namespace: %w", k, err)
			}
		}
		return nil
	})
	if err != nil {
		for _, p := range paths {
			_ = unmountRemove(p)
		}
		return nil, err
	}
	return paths, nil
}

// unmountRemove unmounts p (if mounted) and removes it; a missing p is
// fine.
func unmountRemove(p string) error {
	// Stacked mounts (a retried step) come off one by one.
	for {
		err := unix.Unmount(p, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", p, err)
		}
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
