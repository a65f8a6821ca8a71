package nsbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/cradle-runtime/cradle/pkg/osthread"
	"github.com/cradle-runtime/cradle/pkg/sandbox"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"golang.org/x/sys/unix"
)

// userNSKinds are the namespaces a pod in a user namespace pins: the user
// namespace and the ones it owns (pinned as ns-<kind> under the pod's
// directory).
var userNSKinds = [...]string{"user", "net", "ipc", "uts"}

// startUserNS makes the namespaces of a pod in a user namespace
// (hostUsers: false) as CRI-O's pinns and containerd's sandbox do: one
// clone(2) of a helper process makes the user namespace with the pod's ID
// mappings and, inside it, the pod's network, IPC, UTS and PID namespaces,
// which the user namespace therefore owns (the containers' root can mount
// the sysfs of its network namespace and the mqueue of its IPC namespace,
// which the kernel refuses for namespaces of the host's user namespace). The helper is the infra process
// (pause) in a fresh PID namespace; its namespaces are pinned by bind mounts
// under pod.Dir (pod.NetNS is the network namespace's pin). A pod that
// shares its PID namespace keeps the helper as its infra process; for any
// other the helper is ended once the pins exist.
//
// The helper is executed through /proc/self/fd: the pause program's
// directory need not be searchable by the pod's mapped root.
func (b *Backend) startUserNS(ctx context.Context, pod *sandbox.Pod) (retErr error) {
	m := pod.Config.UserNS
	if len(b.pause) == 0 {
		return fmt.Errorf("no infra command configured for a user namespace")
	}
	prog, err := os.Open(b.pause[0])
	if err != nil {
		return fmt.Errorf("open the pod's infra program: %w", err)
	}
	defer func() { _ = prog.Close() }()
	cmd := exec.Command("/proc/self/fd/3", b.pause[1:]...)
	cmd.Args[0] = filepath.Base(b.pause[0])
	cmd.ExtraFiles = []*os.File{prog}
	cmd.Env = []string{"GOMAXPROCS=1", "GOGC=off"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWPID,
		Setsid:     true,
		// The containers' runtime calls setgroups(2) for supplemental groups.
		GidMappingsEnableSetgroups: true,
		UidMappings:                procIDMaps(m.UIDs),
		GidMappings:                procIDMaps(m.GIDs),
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the pod's user namespace: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	start, err := sandbox.ProcessStart(pid)
	if err != nil {
		_ = cmd.Process.Kill()
		return fmt.Errorf("the pod's infra process: %w", err)
	}
	pod.Pid, pod.PidStart = pid, start
	if pod.Config.PID == ctrconfig.NamespacePod {
		pod.NS["pid"] = fmt.Sprintf("/proc/%d/ns/pid", pid)
	} else {
		defer func() { retErr = errors.Join(retErr, stopInfra(ctx, pod)); pod.Pid, pod.PidStart = 0, 0 }()
	}
	return b.pinUserNS(pod, pid)
}

// pinUserNS bind-mounts the namespaces of process pid under pod.Dir and
// sets the pod's hostname in its UTS namespace.
func (b *Backend) pinUserNS(pod *sandbox.Pod, pid int) error {
	for _, kind := range userNSKinds {
		p := filepath.Join(pod.Dir, "ns-"+kind)
		if err := pinFile(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), p); err != nil {
			return fmt.Errorf("pin the pod's %s namespace: %w", kind, err)
		}
		if kind == "net" {
			pod.NetNS = p
		} else {
			pod.NS[kind] = p
		}
	}
	return setHostname(pod.NS["uts"], pod.Config.Hostname)
}

// pinFile bind-mounts the namespace file src onto a new file dst.
func pinFile(src, dst string) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_RDONLY, 0o444)
	if err != nil {
		return err
	}
	_ = f.Close()
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(dst)
		return err
	}
	return nil
}

// setHostname sets hostname in the UTS namespace pinned at path, from a
// thread that never returns to the Go scheduler (host root may join and
// change a namespace a child user namespace owns).
func setHostname(path, hostname string) error {
	err := osthread.Run(func() error {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer func() { _ = unix.Close(fd) }()
		if err := unix.Setns(fd, unix.CLONE_NEWUTS); err != nil {
			return fmt.Errorf("enter the pod's UTS namespace: %w", err)
		}
		return unix.Sethostname([]byte(hostname))
	})
	if err != nil {
		return fmt.Errorf("set hostname %q: %w", hostname, err)
	}
	return nil
}

func procIDMaps(ms []ctrconfig.IDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, 0, len(ms))
	for _, m := range ms {
		out = append(out, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
	}
	return out
}
