package preflight

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/cradle-runtime/cradle/pkg/network"
	"golang.org/x/sys/unix"
)

// Checks of what the configuration names: conmon, each vm handler's
// virtiofsd, the CNI configuration, the CRI socket.

// checkConmon: without conmon no oci handler runs containers (the daemon
// then reports RuntimeReady false and sends the operator here).
func checkConmon(ctx context.Context, f Facts) []Result {
	path, err := exec.LookPath(f.Conmon)
	if err != nil {
		detail := fmt.Sprintf("%s (runtime.conmon) not found: ", f.Conmon)
		fix := "apt-get install conmon, or set runtime.conmon to its path"
		if len(f.Handlers) == len(f.VMHandlers) {
			return []Result{warn("conmon", detail+"no oci handler is configured, so none needs it", fix)}
		}
		return []Result{fail("conmon", detail+"no oci handler can run containers (RuntimeReady stays false)", fix)}
	}
	return []Result{ok("conmon", commandLine(ctx, path, "--version")+" at "+path)}
}

// checkCRIU: CheckpointContainer (and restoring its archives) needs a
// CRIU whose `criu check` passes on this kernel; without it only those
// RPCs fail (FailedPrecondition), so a problem is a warning.
func checkCRIU(ctx context.Context, f Facts) []Result {
	path, err := exec.LookPath(f.CRIU)
	if err != nil {
		return []Result{warn("criu", f.CRIU+" not found: CheckpointContainer answers FailedPrecondition", "apt-get install criu")}
	}
	version := commandLine(ctx, path, "--version")
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "check").CombinedOutput()
	if err != nil {
		return []Result{warn("criu", fmt.Sprintf("%s (%s): `criu check` fails on this kernel: %s: CheckpointContainer will fail",
			path, version, firstError(string(out), err)),
			"CRIU 4.0 or newer on kernels from 6.13 on (Debian 12's 3.17 cannot read their split [vvar] mapping); earlier in PATH than "+path)}
	}
	return []Result{ok("criu", version+" at "+path+": `criu check` passes")}
}

// firstError is the first line of out that says Error, else err.
func firstError(out string, err error) string {
	for line := range strings.Lines(out) {
		if strings.Contains(line, "Error") {
			return strings.TrimSpace(line)
		}
	}
	return err.Error()
}

// checkVirtiofsd: each vm handler shares its pods' files with their VMs
// through virtiofsd. With no vm handler, the default one is looked for, as
// a hint.
func checkVirtiofsd(ctx context.Context, f Facts) []Result {
	if len(f.VMHandlers) == 0 {
		path, err := exec.LookPath(config.DefaultVirtiofsd)
		if err != nil {
			return []Result{warn("virtiofsd", config.DefaultVirtiofsd+" not found: microVM pods could not run (no vm handler is configured)",
				"apt-get install qemu-system-common")}
		}
		return []Result{ok("virtiofsd", commandLine(ctx, path, "--version")+" at "+path)}
	}
	var out []Result
	for _, name := range sortedKeys(f.VMHandlers) {
		bin, label := f.VMHandlers[name], "virtiofsd "+name
		path, err := exec.LookPath(bin)
		if err != nil {
			out = append(out, fail(label, bin+" not found: the vm handler "+name+" cannot run pods",
				"apt-get install qemu-system-common (or virtiofsd), or set runtime.handlers."+name+".vm.virtiofsd"))
			continue
		}
		out = append(out, ok(label, commandLine(ctx, path, "--version")+" at "+path))
	}
	return out
}

// checkCNI reads the CNI configuration as the daemon does and asks its
// plugins whether they take it. In builtin mode it says whether a cluster
// network add-on's configuration is being ignored.
func checkCNI(ctx context.Context, f Facts) []Result {
	n := f.Network
	if n.Mode == config.NetworkAuto {
		if !network.HasCNIConfig(n.CNIConfDir) {
			return []Result{ok("cni", fmt.Sprintf("network.mode is auto: no CNI configuration in %s, pods get the built-in network (a network add-on that installs one there takes over for new pods)", n.CNIConfDir))}
		}
		// auto with a configuration: checked as in cni mode.
	} else if n.Mode != config.NetworkCNI {
		cfg, err := network.CheckCNI(ctx, n.CNIConfDir, n.CNIBinDirs)
		if err == nil {
			return []Result{warn("cni", fmt.Sprintf("network.mode is %s: the CNI configuration %s (network %q) is not used",
				n.Mode, cfg.File, cfg.Name), `set network.mode = "cni" if it is the cluster's network add-on`)}
		}
		return []Result{ok("cni", fmt.Sprintf("not used (network.mode is %s)", n.Mode))}
	}
	fix := "put a configuration list in " + n.CNIConfDir + " (the network add-on installs one) whose plugins are in " +
		strings.Join(n.CNIBinDirs, " ") + " (Debian: apt-get install containernetworking-plugins)"
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfg, err := network.CheckCNI(ctx, n.CNIConfDir, n.CNIBinDirs)
	if err != nil {
		return []Result{fail("cni", err.Error(), fix)}
	}
	detail := fmt.Sprintf("%s: network %q, cniVersion %s, plugins %s", cfg.File, cfg.Name, cfg.CNIVersion, strings.Join(cfg.Plugins, " "))
	if len(cfg.Skipped) > 0 {
		return []Result{warn("cni", detail+"; skipped before it: "+errors.Join(cfg.Skipped...).Error(),
			"remove or fix the files that sort before it")}
	}
	return []Result{ok("cni", detail)}
}

// maxSocketPath is the longest path a unix socket can have (sun_path
// holds 108 bytes with the terminating NUL).
const maxSocketPath = 107

// checkSocket: serve creates the socket's directory, replaces a stale
// socket, refuses anything else in its place, and gives it to its group.
func checkSocket(_ context.Context, f Facts) []Result {
	const name = "socket"
	if len(f.Socket) > maxSocketPath {
		return []Result{fail(name, fmt.Sprintf("%s is %d bytes, longer than a unix socket path can be (%d)", f.Socket, len(f.Socket), maxSocketPath),
			"choose a shorter grpc.socket")}
	}
	details := []string{}
	dirDetail, problem := socketDir(name, filepath.Dir(f.Socket))
	if problem != nil && problem.Status == Fail {
		return []Result{*problem}
	}
	if dirDetail != "" {
		details = append(details, dirDetail)
	}
	fileDetail, refused := socketFile(name, f.Socket)
	if refused != nil {
		return []Result{*refused}
	}
	details = append(details, fileDetail)
	if f.SocketGroup != "" {
		if err := lookupGroup(f.SocketGroup); err != nil {
			return []Result{fail(name, "grpc.socket_group: "+err.Error(), "create the group, or leave socket_group empty")}
		}
		details = append(details, "group "+f.SocketGroup)
	}
	if problem != nil {
		problem.Detail += "; " + strings.Join(details, "; ")
		return []Result{*problem}
	}
	return []Result{ok(name, strings.Join(details, "; "))}
}

// socketDir checks the socket's directory: a detail to report, or a
// problem (a FAIL ends the check; a WARN is reported with what follows).
func socketDir(name, dir string) (string, *Result) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		anc := dir
		for {
			anc = filepath.Dir(anc)
			if _, err := os.Stat(anc); err == nil || anc == "/" {
				break
			}
		}
		if err := unix.Access(anc, unix.W_OK); err != nil {
			r := fail(name, fmt.Sprintf("%s does not exist and %s is not writable: %v", dir, anc, err),
				"make "+dir+" (or choose a grpc.socket on a writable filesystem)")
			return "", &r
		}
		return "", nil // made at start, with the socket
	case err != nil:
		r := fail(name, err.Error(), "make "+dir+" readable by root")
		return "", &r
	case !fi.IsDir():
		r := fail(name, dir+" is not a directory", "remove it, or choose another grpc.socket")
		return "", &r
	}
	if err := unix.Access(dir, unix.W_OK); err != nil {
		r := fail(name, fmt.Sprintf("%s is not writable: %v", dir, err), "choose a grpc.socket on a writable filesystem")
		return "", &r
	}
	if fi.Mode().Perm()&0o002 != 0 {
		r := warn(name, fmt.Sprintf("%s is writable by everyone (%v): anyone can take the socket's name before cradle starts", dir, fi.Mode().Perm()),
			"put grpc.socket in a directory only root can write, e.g. /run/cradle")
		return "", &r
	}
	return "", nil
}

// socketFile describes what is at the socket's path; r is set when it is
// something serve refuses.
func socketFile(name, socket string) (detail string, r *Result) {
	fi, err := os.Lstat(socket)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return socket + " is made at start", nil
	case err != nil:
		res := fail(name, err.Error(), "")
		return "", &res
	case fi.Mode().Type() != os.ModeSocket:
		res := fail(name, socket+" exists and is not a socket: serve refuses to replace it", "remove it, or choose another grpc.socket")
		return "", &res
	}
	if conn, err := net.DialTimeout("unix", socket, time.Second); err == nil {
		_ = conn.Close()
		return socket + ": a daemon serves on it", nil
	}
	return socket + ": stale (nothing answers; replaced at start)", nil
}

func lookupGroup(g string) error {
	if _, err := strconv.Atoi(g); err == nil {
		return nil
	}
	_, err := user.LookupGroup(g)
	return err
}
